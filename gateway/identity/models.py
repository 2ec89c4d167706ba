"""Principals and OAuth state. Every secret is stored as a keyed hash (client secrets, API
keys, refresh tokens, authorization codes) or a memory-hard KDF output (passwords)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Field, SQLModel, col

from catalogue.models import utcnow


class OAuthClient(SQLModel, table=True):
    __tablename__ = "oauth_client"

    client_id: str = Field(primary_key=True, max_length=64)
    secret_hash: str = Field(max_length=128)  # hex HMAC-SM3 under the server pepper; "" for none
    name: str = Field(default="", max_length=200)
    department_code: str = Field(foreign_key="department.code", index=True, max_length=32)
    scopes: str = Field(default="share:read", max_length=500)  # space separated
    disabled: bool = Field(default=False)
    # set when disabled: tokens issued before it stay dead after the client is enabled again
    tokens_not_before: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # space separated: client_secret_basic client_secret_post private_key_jwt none
    auth_methods: str = Field(default="client_secret_basic client_secret_post", max_length=200)
    grant_types: str = Field(default="client_credentials", max_length=200)
    redirect_uris: str = Field(default="", max_length=2000)  # space separated, exact match
    jwks: str | None = Field(default=None)  # public JWK set (JSON) for private_key_jwt


class Enterprise(SQLModel, table=True):
    __tablename__ = "enterprise"

    code: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    credit_code: str | None = Field(default=None, max_length=18)
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(unique=True, index=True, max_length=32)  # visible part, safe to log
    secret_hash: str = Field(max_length=128)
    enterprise_code: str = Field(foreign_key="enterprise.code", index=True, max_length=64)
    name: str = Field(default="", max_length=200)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    datasets: str = Field(default="", max_length=2000)  # space separated; "" = every granted dataset
    rate_per_minute: int | None = None  # None: the gateway default
    daily_quota: int | None = None
    replaced_by: str | None = Field(default=None, max_length=32)  # prefix of the rotated-in key


class User(SQLModel, table=True):
    """A person: department developer, data steward, security officer, enterprise user, admin."""

    __tablename__ = "app_user"

    id: str = Field(primary_key=True, max_length=64)
    username: str = Field(unique=True, index=True, max_length=100)
    display_name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=300)  # scrypt$N$r$p$salt$hash
    department_code: str | None = Field(default=None, foreign_key="department.code", max_length=32)
    enterprise_code: str | None = Field(default=None, foreign_key="enterprise.code", max_length=64)
    roles: str = Field(default="", max_length=500)  # space separated
    disabled: bool = Field(default=False)
    # set when disabled: tokens issued before it stay dead after the person is enabled again
    tokens_not_before: datetime | None = None
    failed_logins: int = Field(default=0)
    locked_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class AuthorizationCode(SQLModel, table=True):
    __tablename__ = "oauth_authorization_code"

    code_hash: str = Field(primary_key=True, max_length=128)
    client_id: str = Field(max_length=64)
    user_id: str = Field(max_length=64)
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(default="", max_length=500)
    nonce: str | None = Field(default=None, max_length=300)
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(default="S256", max_length=10)
    auth_time: int = Field(default=0)
    expires_at: datetime = Field(default_factory=utcnow)


def end_credentials_of(*, client_id: str | None = None, user_id: str | None = None) -> Any:
    """The statement that revokes every live refresh token of a client or a person: run with
    disabling them, so enabling them again later does not bring an old sign-in back."""
    column = RefreshToken.client_id if client_id is not None else RefreshToken.user_id
    return (
        update(RefreshToken)
        .where(
            col(column) == (client_id if client_id is not None else user_id),
            col(RefreshToken.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )


class RefreshToken(SQLModel, table=True):
    """Rotated on every use; a used token presented again revokes its whole family."""

    __tablename__ = "oauth_refresh_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, index=True, max_length=128)
    family_id: str = Field(index=True, max_length=64)
    client_id: str = Field(max_length=64)
    user_id: str = Field(max_length=64)
    scope: str = Field(default="", max_length=500)
    access_jti: str | None = Field(default=None, max_length=64)
    access_expires_at: int | None = None
    issued_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(default_factory=utcnow)
    used_at: datetime | None = None
    revoked_at: datetime | None = None


class RevokedToken(SQLModel, table=True):
    """Revoked access-token ids, until the token would have expired anyway."""

    __tablename__ = "oauth_revoked_token"

    seq: int | None = Field(default=None, primary_key=True)
    jti: str = Field(unique=True, max_length=64)
    expires_at: int = Field(index=True)  # unix seconds


class TrustedIssuer(SQLModel, table=True):
    """An external OpenID provider whose access tokens the share tier accepts."""

    __tablename__ = "trusted_issuer"

    issuer: str = Field(primary_key=True, max_length=500)
    discovery_url: str = Field(max_length=1000)
    audience: str = Field(max_length=500)
    # Claim mapping: which claim names the department / roles, and how claim values map.
    department_claim: str = Field(default="dept", max_length=100)
    department_map: str = Field(default="{}")  # JSON {claim value: department code}
    roles_claim: str = Field(default="roles", max_length=100)
    scopes: str = Field(default="share:read", max_length=500)  # scopes granted at most
    algorithms: str = Field(default="RS256 ES256", max_length=200)
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)
