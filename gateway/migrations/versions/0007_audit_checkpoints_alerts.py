"""audit: signed checkpoints (audit_checkpoint), alerts (audit_alert), the alert evaluator's
position in the chain (audit_alert_cursor) and the addresses each client was seen from

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("signature", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "audit_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("principal_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("consumer", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("raised_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("acknowledged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("ack_comment", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule", "seq", name="uq_audit_alert_rule_seq"),
    )
    op.create_index("ix_audit_alert_rule_principal", "audit_alert", ["rule", "principal_id", "occurred_at"])
    op.create_table(
        "audit_alert_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO audit_alert_cursor (id, seq) VALUES (1, 0)")
    op.create_table(
        "audit_alert_address",
        sa.Column("principal_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("client_address", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("principal_id", "client_address"),
    )


def downgrade() -> None:
    op.drop_table("audit_alert_address")
    op.drop_table("audit_alert_cursor")
    op.drop_index("ix_audit_alert_rule_principal", table_name="audit_alert")
    op.drop_table("audit_alert")
    op.drop_table("audit_checkpoint")
