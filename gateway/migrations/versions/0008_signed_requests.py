"""signed requests: departments whose share-tier requests must be RFC 9421 SM2-signed

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signed_request_policy",
        sa.Column("department_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["department_code"], ["department.code"]),
        sa.PrimaryKeyConstraint("department_code"),
    )


def downgrade() -> None:
    op.drop_table("signed_request_policy")
