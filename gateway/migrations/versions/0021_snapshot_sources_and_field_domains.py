"""snapshot sources (a sync that propagates deletes) and the values a 信息项 may take
(an enumeration, a maximum length), checked while loading

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_status", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source_snapshot", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("dataset_field", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_values", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("max_length", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset_field", schema=None) as batch_op:
        batch_op.drop_column("max_length")
        batch_op.drop_column("allowed_values")
    with op.batch_alter_table("dataset_status", schema=None) as batch_op:
        batch_op.drop_column("source_snapshot")
