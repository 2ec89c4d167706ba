"""Principals: department OAuth clients and enterprises with API keys (secrets stored as keyed hashes)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from gateway.catalogue.models import utcnow


class OAuthClient(SQLModel, table=True):
    __tablename__ = "oauth_client"

    client_id: str = Field(primary_key=True, max_length=64)
    secret_hash: str = Field(max_length=128)  # hex HMAC-SM3 under the server pepper
    name: str = Field(default="", max_length=200)
    department_code: str = Field(foreign_key="department.code", index=True, max_length=32)
    scopes: str = Field(default="share:read", max_length=500)  # space separated
    disabled: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)


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
