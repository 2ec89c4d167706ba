"""catalogue: each dataset's freshness and size (row count, last load and change, digest of the
last load, last sync and its outcome) and the source an incremental sync reads from

A table beside `dataset` (catalogue.freshness): loads change it on every run without bumping
the catalogue version.

Revision ID: 0017
Revises: 0016 (migrations in one line)
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0017"
down_revision = "0016"  # chained after the demands and quality reports
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "dataset_status",
        sa.Column("dataset_code", text(length=64), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=True),
        sa.Column("last_load_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_change_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_load_digest", text(length=80), nullable=True),
        sa.Column("last_load_mode", text(length=16), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sync_outcome", text(), nullable=True),
        sa.Column("sync_watermark", text(length=64), nullable=True),
        sa.Column("source_url", text(), nullable=True),
        sa.Column("source_sql", text(), nullable=True),
        sa.Column("source_table", text(length=200), nullable=True),
        sa.Column("source_updated_column", text(length=64), nullable=True),
        sa.Column("source_key", text(length=200), nullable=True),
        sa.PrimaryKeyConstraint("dataset_code"),
    )


def downgrade() -> None:
    op.drop_table("dataset_status")
