"""Audit tables: the append-only event chain and its one-row head.

Strings are unbounded on purpose: a VARCHAR(n) overflow would make `record()` fail and, since the
log is fail closed, refuse a legitimate request."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Float
from sqlmodel import Field, SQLModel

HEAD_ID = 1


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    # Assigned by the writer under the chain lock (head.seq + 1), never by the database,
    # so the sequence has no gaps even when a transaction rolls back.
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    occurred_at: datetime
    request_id: str
    tier: str
    principal_kind: str
    principal_id: str
    consumer: str | None = None
    client_address: str | None = None
    operation_name: str | None = None
    operation_type: str | None = None
    query_digest: str | None = None
    status: int
    error_codes: str = "[]"  # JSON array of error codes
    latency_ms: float = Field(sa_column=Column(Float(precision=53), nullable=False))
    detail: str = "{}"  # JSON {"fields": [...], "reads": [...]}: decisions only, never response values
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditChainHead(SQLModel, table=True):
    """The last appended (seq, hash). Writers lock this row to serialise appends; `verify_chain`
    compares it with the last event, which catches a truncated tail."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=HEAD_ID, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)
