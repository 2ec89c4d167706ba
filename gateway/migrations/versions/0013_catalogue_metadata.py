"""catalogue: a dataset's licence, contact and tags (what a catalogue file declares beside the
existing 编目 attributes; `shuqiao catalog apply|export`)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013"
down_revision = "0012"  # grants: lifecycle columns
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER TABLE much, so alembic copies the table there
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "licence", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False, server_default=""
            )
        )
        batch_op.add_column(
            sa.Column("contact", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("tags")
        batch_op.drop_column("contact")
        batch_op.drop_column("licence")
