"""web sessions: people signed in to the gateway's own pages (the officers' console first)

One row per session; the browser holds only an opaque random id, and the row its hash (SM3-HMAC
under the server pepper), the access token the sign-in obtained (sealed), who and until when.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0018"
down_revision = "0017"  # chained after the dataset freshness
branch_labels = None
depends_on = None

T = sqlmodel.sql.sqltypes.UTCDateTime
S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id_hash", S(length=128), nullable=False),
        sa.Column("user_id", S(length=64), nullable=False),
        sa.Column("username", S(length=100), nullable=False),
        sa.Column("display_name", S(length=200), nullable=False),
        sa.Column("roles", S(length=500), nullable=False),
        sa.Column("department", S(length=64), nullable=True),
        sa.Column("scopes", S(length=500), nullable=False),
        sa.Column("jti", S(length=64), nullable=False),
        sa.Column("token_sealed", S(), nullable=False),
        sa.Column("csrf", S(length=64), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("last_seen_at", T(), nullable=False),
        sa.Column("expires_at", T(), nullable=False),
        sa.Column("revoked_at", T(), nullable=True),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_web_session_user_id", "web_session", ["user_id"], unique=False)
    op.create_index("ix_web_session_expires_at", "web_session", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_web_session_expires_at", table_name="web_session")
    op.drop_index("ix_web_session_user_id", table_name="web_session")
    op.drop_table("web_session")
