"""audit: event extension columns (subject, row_count, sealed variables, signature kid), the
per-field search index, and indexes for officer searches

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column("row_count", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("variables_enc", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column("signature_kid", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_index("ix_audit_event_occurred_at", "audit_event", ["occurred_at"])
    op.create_index("ix_audit_event_consumer", "audit_event", ["consumer", "seq"])
    op.create_table(
        "audit_field_access",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("seq", "dataset", "field"),
    )
    op.create_index("ix_audit_field_access_dataset_field", "audit_field_access", ["dataset", "field", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_field_access_dataset_field", table_name="audit_field_access")
    op.drop_table("audit_field_access")
    op.drop_index("ix_audit_event_consumer", table_name="audit_event")
    op.drop_index("ix_audit_event_occurred_at", table_name="audit_event")
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("signature_kid")
        batch.drop_column("variables_enc")
        batch.drop_column("row_count")
        batch.drop_column("subject")
