"""identity: client auth methods and redirect URIs, API-key scopes and limits, people,
authorization codes, refresh-token families, revoked access tokens, trusted issuers

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("oauth_client", schema=None) as b:
        b.add_column(
            sa.Column(
                "auth_methods",
                S(length=200),
                nullable=False,
                server_default="client_secret_basic client_secret_post",
            )
        )
        b.add_column(
            sa.Column("grant_types", S(length=200), nullable=False, server_default="client_credentials")
        )
        b.add_column(sa.Column("redirect_uris", S(length=2000), nullable=False, server_default=""))
        b.add_column(sa.Column("jwks", S(), nullable=True))
    with op.batch_alter_table("api_key", schema=None) as b:
        b.add_column(sa.Column("datasets", S(length=2000), nullable=False, server_default=""))
        b.add_column(sa.Column("rate_per_minute", sa.Integer(), nullable=True))
        b.add_column(sa.Column("daily_quota", sa.Integer(), nullable=True))
        b.add_column(sa.Column("replaced_by", S(length=32), nullable=True))

    op.create_table(
        "app_user",
        sa.Column("id", S(length=64), nullable=False),
        sa.Column("username", S(length=100), nullable=False),
        sa.Column("display_name", S(length=200), nullable=False),
        sa.Column("password_hash", S(length=300), nullable=False),
        sa.Column("department_code", S(length=32), nullable=True),
        sa.Column("enterprise_code", S(length=64), nullable=True),
        sa.Column("roles", S(length=500), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", T(), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department.code"],
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_code"],
            ["enterprise.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_app_user_username", "app_user", ["username"], unique=True)

    op.create_table(
        "oauth_authorization_code",
        sa.Column("code_hash", S(length=128), nullable=False),
        sa.Column("client_id", S(length=64), nullable=False),
        sa.Column("user_id", S(length=64), nullable=False),
        sa.Column("redirect_uri", S(length=2000), nullable=False),
        sa.Column("scope", S(length=500), nullable=False),
        sa.Column("nonce", S(length=300), nullable=True),
        sa.Column("code_challenge", S(length=128), nullable=False),
        sa.Column("code_challenge_method", S(length=10), nullable=False),
        sa.Column("auth_time", sa.Integer(), nullable=False),
        sa.Column("expires_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("code_hash"),
    )

    op.create_table(
        "oauth_refresh_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", S(length=128), nullable=False),
        sa.Column("family_id", S(length=64), nullable=False),
        sa.Column("client_id", S(length=64), nullable=False),
        sa.Column("user_id", S(length=64), nullable=False),
        sa.Column("scope", S(length=500), nullable=False),
        sa.Column("access_jti", S(length=64), nullable=True),
        sa.Column("access_expires_at", sa.Integer(), nullable=True),
        sa.Column("issued_at", T(), nullable=False),
        sa.Column("expires_at", T(), nullable=False),
        sa.Column("used_at", T(), nullable=True),
        sa.Column("revoked_at", T(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oauth_refresh_token_token_hash", "oauth_refresh_token", ["token_hash"], unique=True)
    op.create_index("ix_oauth_refresh_token_family_id", "oauth_refresh_token", ["family_id"], unique=False)

    op.create_table(
        "oauth_revoked_token",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("jti", S(length=64), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("jti"),
    )
    op.create_index("ix_oauth_revoked_token_expires_at", "oauth_revoked_token", ["expires_at"], unique=False)

    op.create_table(
        "trusted_issuer",
        sa.Column("issuer", S(length=500), nullable=False),
        sa.Column("discovery_url", S(length=1000), nullable=False),
        sa.Column("audience", S(length=500), nullable=False),
        sa.Column("department_claim", S(length=100), nullable=False),
        sa.Column("department_map", S(), nullable=False),
        sa.Column("roles_claim", S(length=100), nullable=False),
        sa.Column("scopes", S(length=500), nullable=False),
        sa.Column("algorithms", S(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("issuer"),
    )


def downgrade() -> None:
    op.drop_table("trusted_issuer")
    op.drop_index("ix_oauth_revoked_token_expires_at", table_name="oauth_revoked_token")
    op.drop_table("oauth_revoked_token")
    op.drop_index("ix_oauth_refresh_token_family_id", table_name="oauth_refresh_token")
    op.drop_index("ix_oauth_refresh_token_token_hash", table_name="oauth_refresh_token")
    op.drop_table("oauth_refresh_token")
    op.drop_table("oauth_authorization_code")
    op.drop_index("ix_app_user_username", table_name="app_user")
    op.drop_table("app_user")
    with op.batch_alter_table("api_key", schema=None) as b:
        for c in ("replaced_by", "daily_quota", "rate_per_minute", "datasets"):
            b.drop_column(c)
    with op.batch_alter_table("oauth_client", schema=None) as b:
        for c in ("jwks", "redirect_uris", "grant_types", "auth_methods"):
            b.drop_column(c)
