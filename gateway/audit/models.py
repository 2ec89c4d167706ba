"""Audit tables: the append-only event chain, its one-row head, signed checkpoints and the
anchors retention leaves where it pruned.

Strings are unbounded on purpose: a VARCHAR(n) overflow would make `record()` fail and, since the
log is fail closed, refuse a legitimate request."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Dialect,
    Float,
    Index,
    Integer,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine
from sqlmodel import Field, SQLModel

HEAD_ID = 1


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    # Assigned by the writer under the chain lock (head.seq + 1), never by the database,
    # so the sequence has no gaps even when a transaction rolls back. On PostgreSQL the table is
    # partitioned by month of occurred_at (migration 0026, gateway.audit.partitions), and a
    # partitioned table's key must hold the partition key: there the key is (seq, occurred_at),
    # seq staying unique by construction (the writer; `verify` reports a duplicate). The model
    # describes the table, not its partitioning, as SQLite has it (alembic's autogenerate does
    # not compare keys; tests/audit/test_partitions.py checks each backend's).
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
    # Added by migration 0004. Hashed only when not NULL (see chain.EXTENSION_COLUMNS), so events
    # written before 0004 keep their hashes.
    subject: str | None = None  # the person behind the token, when there is one
    row_count: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    variables_enc: str | None = None  # SM4-GCM sealed query variables (gateway.audit.variables)
    signature_kid: str | None = None  # the key id that signed the response, if it was signed

    __table_args__ = (
        Index("ix_audit_event_occurred_at", "occurred_at"),
        Index("ix_audit_event_consumer", "consumer", "seq"),
        # the officers' search by person (migration 0025)
        Index("ix_audit_event_principal_id", "principal_id", "seq"),
        Index("ix_audit_event_subject", "subject", "seq"),
    )


class TextList(TypeDecorator[list[str]]):
    """A list of strings: text[] on PostgreSQL, a JSON array in a TEXT column on SQLite."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(ARRAY(Text) if dialect.name == "postgresql" else Text())

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.dumps(list(value), ensure_ascii=False)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str] | None:
        if value is None or dialect.name == "postgresql":
            return value
        return list(json.loads(value))


class AuditFieldAccess(SQLModel, table=True):
    """One row per (event, dataset the event touched): the search index officers filter on, with
    the dataset's fields and the first decision listed for each in two parallel arrays (empty for
    a read that selected no field of it). It is derived from the hashed `detail` of the event, so
    tampering here cannot hide anything the chain covers: the event shown is always the hashed
    one. Filled beside the request path, not in the append's transaction
    (gateway.audit.field_index); one row per (event, dataset, field) until migration 0029.

    One b-tree, the key searches use (dataset, seq); the seq index, for joins with the events and
    for pruning, is BRIN on PostgreSQL (rows arrive in seq order, so it costs almost nothing to
    keep) and the table has no rowid b-tree on SQLite."""

    __tablename__ = "audit_field_access"

    dataset: str = Field(primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    fields: list[str] = Field(sa_column=Column(TextList, nullable=False))
    actions: list[str] = Field(sa_column=Column(TextList, nullable=False))

    __table_args__ = (
        Index("ix_audit_field_access_seq", "seq", postgresql_using="brin"),
        {"sqlite_with_rowid": False},
    )


class AuditIndexCursor(SQLModel, table=True):
    """The seq through which audit_field_access is filled (gateway.audit.field_index)."""

    __tablename__ = "audit_index_cursor"

    id: int = Field(default=HEAD_ID, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class AuditChainHead(SQLModel, table=True):
    """The last appended (seq, hash). Writers lock this row to serialise appends; `verify_chain`
    compares it with the last event, which catches a truncated tail."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=HEAD_ID, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """A signed (seq, hash) of the chain: see gateway.audit.checkpoints."""

    __tablename__ = "audit_checkpoint"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str = Field(max_length=64)
    created_at: datetime
    kid: str
    signature: str  # lowercase hex of the DER SM2 signature


class AuditPruneAnchor(SQLModel, table=True):
    """One row per prune (gateway.audit.retention): events from_seq..through_seq were archived to
    `archive` (SM3 of its bytes: `archive_sm3`) and deleted; `hash` is the hash of event
    through_seq, which the first remaining event links to. Written in the delete's transaction.

    from_seq is unique: two prunes planned from the same anchor conflict, so exactly one of them
    commits (the compare-and-set that makes concurrent prunes safe)."""

    __tablename__ = "audit_prune_anchor"

    through_seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    from_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)
    archive: str
    archive_sm3: str = Field(max_length=64)
    pruned_at: datetime

    __table_args__ = (UniqueConstraint("from_seq", name="uq_audit_prune_anchor_from_seq"),)
