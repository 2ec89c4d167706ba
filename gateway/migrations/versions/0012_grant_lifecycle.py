"""grants: lifecycle columns (who created it; revoked when, by whom, why; renewed when, by whom)

A grant is now approved, then possibly renewed (new expiry) or revoked (kept, with its reason,
so the audit trail and the KPIs can still name it); `pending` stays for applications.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER TABLE much, so alembic copies the table there
    with op.batch_alter_table("grant", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch_op.add_column(sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("revoked_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch_op.add_column(sa.Column("revoke_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("renewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("renewed_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_grant_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("grant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grant_status"))
        batch_op.drop_column("renewed_by")
        batch_op.drop_column("renewed_at")
        batch_op.drop_column("revoke_reason")
        batch_op.drop_column("revoked_by")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("created_by")
