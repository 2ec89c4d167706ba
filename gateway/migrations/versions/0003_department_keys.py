"""department keys: registered SM2 public keys for field encryption

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "department_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("department_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("public_pem", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("not_before", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("not_after", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kid"),
    )
    with op.batch_alter_table("department_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_department_key_department_code"), ["department_code"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("department_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_department_key_department_code"))
    op.drop_table("department_key")
