"""audit forwarding (feeding the SOC): one durable cursor per sink, the event seq and alert id it
has delivered through, and the lease that lets one worker at a time send; alert handling: each
alert's state (open, acknowledged, assigned, closed), assignee and closing, and the history of the
actions taken on it

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03 06:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0023"
down_revision = "0022"
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
    with op.batch_alter_table("audit_alert", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", S(length=16), nullable=False, server_default="open"))
        batch_op.add_column(sa.Column("assignee", S(length=100), nullable=True))
        batch_op.add_column(sa.Column("closed_at", T(), nullable=True))
        batch_op.add_column(sa.Column("closed_by", S(), nullable=True))
        batch_op.add_column(sa.Column("close_reason", S(length=32), nullable=True))
    op.execute("UPDATE audit_alert SET state = 'acknowledged' WHERE acknowledged_at IS NOT NULL")
    op.create_table(
        "audit_alert_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("at", T(), nullable=False),
        sa.Column("by", S(length=200), nullable=False),
        sa.Column("action", S(length=16), nullable=False),
        sa.Column("from_state", S(length=16), nullable=False),
        sa.Column("to_state", S(length=16), nullable=False),
        sa.Column("assignee", S(length=100), nullable=True),
        sa.Column("reason", S(length=32), nullable=True),
        sa.Column("comment", S(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_alert_action_alert", "audit_alert_action", ["alert_id", "id"], unique=False)
    # what was acknowledged before handling existed keeps its acknowledgement as the first action
    op.execute(
        "INSERT INTO audit_alert_action (alert_id, at, by, action, from_state, to_state, comment) "
        "SELECT id, acknowledged_at, COALESCE(acknowledged_by, ''), 'acknowledge', 'open', 'acknowledged', "
        "ack_comment FROM audit_alert WHERE acknowledged_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_audit_alert_action_alert", table_name="audit_alert_action")
    op.drop_table("audit_alert_action")
    with op.batch_alter_table("audit_alert", schema=None) as batch_op:
        batch_op.drop_column("close_reason")
        batch_op.drop_column("closed_by")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("assignee")
        batch_op.drop_column("state")
    op.drop_table("audit_forward_cursor")
