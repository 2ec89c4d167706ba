"""watermark in text (数据水印): a per-field text scheme beside the numeric tolerance

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_field", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("watermark_text", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("dataset_field", schema=None) as batch_op:
        batch_op.drop_column("watermark_text")
