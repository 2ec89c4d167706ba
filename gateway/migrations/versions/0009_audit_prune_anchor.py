"""audit: prune anchors (audit_prune_anchor), one row per retention prune, written in the delete's
transaction, so verification starts after the pruned range

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_prune_anchor",
        sa.Column("through_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("from_seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("archive", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("archive_sm3", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("pruned_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("through_seq"),
        sa.UniqueConstraint("from_seq", name="uq_audit_prune_anchor_from_seq"),
    )


def downgrade() -> None:
    op.drop_table("audit_prune_anchor")
