"""watermark (数据水印): per-field tolerance and decision-relevance in the catalogue, and the
gateway's wrapped watermark keys

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0019"
down_revision = "0018"  # chained after the web sessions
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_field", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("watermark_tolerance", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
        )
        batch_op.add_column(
            sa.Column("decision_relevant", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "watermark_key",
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("retired_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("kid"),
        sa.UniqueConstraint("generation"),
    )


def downgrade() -> None:
    op.drop_table("watermark_key")
    with op.batch_alter_table("dataset_field", schema=None) as batch_op:
        batch_op.drop_column("decision_relevant")
        batch_op.drop_column("watermark_tolerance")
