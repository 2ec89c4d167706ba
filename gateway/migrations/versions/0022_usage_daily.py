"""portal statistics: usage of the open tier per dataset and day (usage_daily), rolled up from the
audit log after the seq in usage_rollup_cursor (gateway.portal.usage)

The cursor starts at 0: the gateway's rollup task counts the retained history in the background,
chunk by chunk, and then follows new events.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 06:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("downloads", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "day"),
    )
    op.create_index("ix_usage_daily_day", "usage_daily", ["day"])
    op.create_table(
        "usage_rollup_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO usage_rollup_cursor (id, seq) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("usage_rollup_cursor")
    op.drop_index("ix_usage_daily_day", table_name="usage_daily")
    op.drop_table("usage_daily")
