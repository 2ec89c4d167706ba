"""audit_event: indexes for the officers' search by person (principal_id or subject), newest first

Without them a search by person read the whole table (10,000,000 events: seconds); with them it
reads that person's events. Both end in seq, the order results are paged in.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_event_principal_id", "audit_event", ["principal_id", "seq"])
    op.create_index("ix_audit_event_subject", "audit_event", ["subject", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_subject", table_name="audit_event")
    op.drop_index("ix_audit_event_principal_id", table_name="audit_event")
