"""workflow: demands (需求清单), data-quality reports (问题数据) and daily KPI snapshots

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016"
down_revision = "0015"  # chained after the applications
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "demand",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requester", S(length=32), nullable=False),
        sa.Column("provider", S(length=32), nullable=False),
        sa.Column("description", S(), nullable=False),
        sa.Column("fields_wanted", S(), nullable=False),
        sa.Column("purpose", S(), nullable=False),
        sa.Column("state", S(length=16), nullable=False),
        sa.Column("promised_date", sa.Date(), nullable=True),
        sa.Column("reason", S(), nullable=True),
        sa.Column("dataset_code", S(length=64), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("created_by", S(length=128), nullable=False),
        sa.Column("answered_at", T(), nullable=True),
        sa.Column("answered_by", S(length=128), nullable=True),
        sa.Column("fulfilled_at", T(), nullable=True),
        sa.Column("fulfilled_by", S(length=128), nullable=True),
        sa.Column("history", S(), nullable=False),
        sa.ForeignKeyConstraint(["requester"], ["department.code"]),
        sa.ForeignKeyConstraint(["provider"], ["department.code"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("demand", schema=None) as b:
        b.create_index(b.f("ix_demand_requester"), ["requester"], unique=False)
        b.create_index(b.f("ix_demand_provider"), ["provider"], unique=False)
        b.create_index(b.f("ix_demand_state"), ["state"], unique=False)

    op.create_table(
        "quality_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reporter", S(length=32), nullable=False),
        sa.Column("provider", S(length=32), nullable=False),
        sa.Column("dataset_code", S(length=64), nullable=False),
        sa.Column("key_field", S(length=64), nullable=False),
        sa.Column("record_ref", S(length=200), nullable=False),
        sa.Column("field", S(length=64), nullable=True),
        sa.Column("description", S(), nullable=False),
        sa.Column("state", S(length=16), nullable=False),
        sa.Column("reason", S(), nullable=True),
        sa.Column("opened_at", T(), nullable=False),
        sa.Column("deadline", T(), nullable=False),
        sa.Column("deadline_provisional", sa.Boolean(), nullable=False),
        sa.Column("resolved_at", T(), nullable=True),
        sa.Column("resolved_by", S(length=128), nullable=True),
        sa.Column("created_by", S(length=128), nullable=False),
        sa.Column("history", S(), nullable=False),
        sa.ForeignKeyConstraint(["reporter"], ["department.code"]),
        sa.ForeignKeyConstraint(["provider"], ["department.code"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("quality_report", schema=None) as b:
        b.create_index(b.f("ix_quality_report_reporter"), ["reporter"], unique=False)
        b.create_index(b.f("ix_quality_report_provider"), ["provider"], unique=False)
        b.create_index(b.f("ix_quality_report_dataset_code"), ["dataset_code"], unique=False)
        b.create_index(b.f("ix_quality_report_state"), ["state"], unique=False)

    op.create_table(
        "kpi_snapshot",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("taken_at", T(), nullable=False),
        sa.Column("figures", S(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )


def downgrade() -> None:
    op.drop_table("kpi_snapshot")
    with op.batch_alter_table("quality_report", schema=None) as b:
        b.drop_index(b.f("ix_quality_report_state"))
        b.drop_index(b.f("ix_quality_report_dataset_code"))
        b.drop_index(b.f("ix_quality_report_provider"))
        b.drop_index(b.f("ix_quality_report_reporter"))
    op.drop_table("quality_report")
    with op.batch_alter_table("demand", schema=None) as b:
        b.drop_index(b.f("ix_demand_state"))
        b.drop_index(b.f("ix_demand_provider"))
        b.drop_index(b.f("ix_demand_requester"))
    op.drop_table("demand")
