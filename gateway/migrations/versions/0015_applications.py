"""applications (申请) and their history; a grant names the application it was approved from
and may carry a row scope

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-03 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015"
down_revision = "0013"  # chained after the catalogue metadata
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "application",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tier", S(length=8), nullable=False),
        sa.Column("consumer", S(length=64), nullable=False),
        sa.Column("applicant", S(length=128), nullable=False),
        sa.Column("provider", S(length=32), nullable=False),
        sa.Column("dataset_code", S(length=64), nullable=False),
        sa.Column("requested", S(), nullable=False),
        sa.Column("purpose", S(), nullable=False),
        sa.Column("legal_basis", S(), nullable=False),
        sa.Column("period_start", T(), nullable=True),
        sa.Column("period_end", T(), nullable=False),
        sa.Column("row_scope", S(), nullable=True),
        sa.Column("state", S(length=16), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.Column("submitted_at", T(), nullable=True),
        sa.Column("decided_at", T(), nullable=True),
        sa.Column("decided_by", S(length=128), nullable=True),
        sa.Column("decision_reason", S(), nullable=True),
        sa.Column("approved_fields", S(), nullable=True),
        sa.Column("approved_scope", S(), nullable=True),
        sa.Column("approved_end", T(), nullable=True),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_code"], ["dataset.code"]),
        sa.ForeignKeyConstraint(["grant_id"], ["grant.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("application", schema=None) as b:
        b.create_index(b.f("ix_application_consumer"), ["consumer"], unique=False)
        b.create_index(b.f("ix_application_provider"), ["provider"], unique=False)
        b.create_index(b.f("ix_application_dataset_code"), ["dataset_code"], unique=False)
        b.create_index(b.f("ix_application_state"), ["state"], unique=False)
    op.create_table(
        "application_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("at", T(), nullable=False),
        sa.Column("actor", S(length=128), nullable=False),
        sa.Column("actor_organisation", S(length=64), nullable=True),
        sa.Column("step", S(length=16), nullable=False),
        sa.Column("from_state", S(length=16), nullable=True),
        sa.Column("to_state", S(length=16), nullable=False),
        sa.Column("reason", S(), nullable=True),
        sa.Column("changes", S(), nullable=True),
        sa.ForeignKeyConstraint(["application_id"], ["application.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("application_event", schema=None) as b:
        b.create_index(b.f("ix_application_event_application_id"), ["application_id"], unique=False)
    with op.batch_alter_table("grant", schema=None) as b:
        b.add_column(sa.Column("application_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("row_scope", S(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("grant", schema=None) as b:
        b.drop_column("row_scope")
        b.drop_column("application_id")
    with op.batch_alter_table("application_event", schema=None) as b:
        b.drop_index(b.f("ix_application_event_application_id"))
    op.drop_table("application_event")
    with op.batch_alter_table("application", schema=None) as b:
        b.drop_index(b.f("ix_application_state"))
        b.drop_index(b.f("ix_application_dataset_code"))
        b.drop_index(b.f("ix_application_provider"))
        b.drop_index(b.f("ix_application_consumer"))
    op.drop_table("application")
