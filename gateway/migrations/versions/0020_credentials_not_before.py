"""tokens issued before a client or person was last disabled stay dead after re-enabling

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 07:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("oauth_client", "app_user"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("tokens_not_before", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
            )


def downgrade() -> None:
    for table in ("oauth_client", "app_user"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("tokens_not_before")
