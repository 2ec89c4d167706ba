"""Data keys for encryption at rest; joins the feature branches 0003, 0004 and 0005.

Pool tables are not Alembic's: their blind-index columns are added, and their existing
values encrypted in place, by `shuqiao pool encrypt` (resumable, batch by batch).

Revision ID: 0006
Revises: 0003, 0004, 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = ("0003", "0004", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_key",
        sa.Column("dataset_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("wrapped_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("wrapped_index_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("dataset_code"),
    )


def downgrade() -> None:
    op.drop_table("data_key")
