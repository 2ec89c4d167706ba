"""audit forwarding (feeding the SOC): one durable cursor per sink, the event seq and alert id it
has delivered through, and the lease that lets one worker at a time send

Revision ID: 0024
Revises: 0028
Create Date: 2026-12-03 06:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0024"
down_revision = "0028"  # chained after main's head at the time (the lead re-chains at merge)
branch_labels = None
depends_on = None

T = sqlmodel.sql.sqltypes.UTCDateTime
S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "audit_forward_cursor",
        sa.Column("sink", S(length=32), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("delivered_events", sa.BigInteger(), nullable=False),
        sa.Column("delivered_alerts", sa.BigInteger(), nullable=False),
        sa.Column("skipped_events", sa.BigInteger(), nullable=False),
        sa.Column("holder", S(length=128), nullable=True),
        sa.Column("lease_until", T(), nullable=True),
        sa.Column("delivered_at", T(), nullable=True),
        sa.Column("failed_at", T(), nullable=True),
        sa.Column("last_error", S(), nullable=True),
        sa.PrimaryKeyConstraint("sink"),
    )


def downgrade() -> None:
    op.drop_table("audit_forward_cursor")
