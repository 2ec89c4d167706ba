"""Grant records (approved applications, 共享/开放申请)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from catalogue.models import utcnow


class GrantRecord(SQLModel, table=True):
    __tablename__ = "grant"

    id: int | None = Field(default=None, primary_key=True)
    tier: str = Field(max_length=8)  # share | open
    dataset_code: str = Field(foreign_key="dataset.code", index=True, max_length=64)
    consumer: str = Field(index=True, max_length=64)  # department code or enterprise code
    fields: str = Field(default="")  # space separated snake_case field names
    clear_fields: str = Field(default="")
    purpose: str = Field(default="")
    status: str = Field(default="approved", index=True, max_length=16)  # pending | approved | revoked
    expires_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str | None = Field(default=None, max_length=128)  # operator or (later) approving steward
    revoked_at: datetime | None = None
    revoked_by: str | None = Field(default=None, max_length=128)
    revoke_reason: str | None = None
    renewed_at: datetime | None = None  # the last renewal (expires_at then holds the new expiry)
    renewed_by: str | None = Field(default=None, max_length=128)
    application_id: int | None = None  # the application (申请) it was approved from, if any
    row_scope: str | None = None  # JSON {column: {"in": [...]} | {"eq": v}}; None: every row
