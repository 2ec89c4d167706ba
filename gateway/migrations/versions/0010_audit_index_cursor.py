"""audit: the field-access search index is filled beside the request path; audit_index_cursor
says through which seq it is filled (seeded with the head: earlier events were indexed in their
append's transaction)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_index_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO audit_index_cursor (id, seq) "
               "SELECT 1, coalesce((SELECT max(seq) FROM audit_event), 0)")


def downgrade() -> None:
    op.drop_table("audit_index_cursor")
