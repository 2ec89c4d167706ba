"""`department_key`: the SM2 public keys departments register so that sensitive fields
(L4 / 敏感个人信息) can be delivered to them encrypted. Only public keys are stored."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from catalogue.models import utcnow

# active: the key fields are encrypted to (at most one per department);
# retired: replaced by a newer key — the department keeps its private key to read old values;
# revoked: withdrawn (compromise); never used again.
KEY_STATUSES = ("active", "retired", "revoked")


class DepartmentKey(SQLModel, table=True):
    __tablename__ = "department_key"

    id: int | None = Field(default=None, primary_key=True)
    department_code: str = Field(foreign_key="department.code", index=True, max_length=32)
    kid: str = Field(unique=True, max_length=64)  # 16 hex of the SM3 fingerprint, as keys.keystore
    public_pem: str  # SubjectPublicKeyInfo PEM
    not_before: datetime
    not_after: datetime
    status: str = Field(default="active", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class SignedRequestPolicy(SQLModel, table=True):
    """Departments whose share-tier requests must carry an RFC 9421 SM2 signature made with
    their active `department_key` (`shuqiao keys require-signed-requests`). No row = not
    required (a signed request is still verified)."""

    __tablename__ = "signed_request_policy"

    department_code: str = Field(foreign_key="department.code", primary_key=True, max_length=32)
    required: bool = Field(default=False)
    updated_at: datetime = Field(default_factory=utcnow)
