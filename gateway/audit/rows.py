"""An audit_event row: built from an access event, and encoded as SQLAlchemy would encode it for
the writers that bypass its `insert()` (PostgreSQL's one-statement append, SQLite's writer).
Numbering and linking the rows is the chain's (gateway.audit.chain.link)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Dialect

from gateway.access_log import AccessEvent
from gateway.audit.models import AuditEvent
from gateway.audit.variables import VariableCipher
from gateway.db import table_of

EVENTS = table_of(AuditEvent)


def event_row(
    event: AccessEvent, occurred_at: datetime, cipher: VariableCipher | None = None
) -> dict[str, Any]:
    """The audit_event columns for an access event, minus seq / prev_hash / hash.

    Query variables are stored only sealed (no cipher: not stored at all); response values are
    never part of an event."""
    rows = sum(int(r.get("rows") or 0) for r in event.reads) if event.reads else None
    return {
        "occurred_at": occurred_at,
        "request_id": event.request_id,
        "tier": event.tier,
        "principal_kind": event.principal_kind,
        "principal_id": event.principal_id,
        "consumer": event.consumer,
        "client_address": event.client_address,
        "operation_name": event.operation_name,
        "operation_type": event.operation_type,
        "query_digest": event.query_digest,
        "status": int(event.status),
        "error_codes": orjson.dumps(list(event.error_codes)).decode(),
        # Rounded here so the stored float and the hashed float are the same number.
        "latency_ms": round(float(event.latency_ms), 3),
        "detail": orjson.dumps(
            {"fields": event.fields, "reads": event.reads}, option=orjson.OPT_SORT_KEYS
        ).decode(),
        "subject": event.subject,
        "row_count": rows,
        "variables_enc": cipher.seal(event.request_id, event.variables) if cipher else None,
        "signature_kid": event.signature_kid,
    }


EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in EVENTS.c)


def bind_processors(dialect: Dialect, table: Any, names: Sequence[str]) -> list[Callable[[Any], Any] | None]:
    """What SQLAlchemy would apply to each column's value on insert (e.g. UTCDateTime's checks),
    so the raw-driver paths store exactly what `insert(EVENTS)` stored."""
    return [table.c[n].type.bind_processor(dialect) for n in names]


def processed(
    rows: list[dict[str, Any]], names: Sequence[str], procs: list[Callable[[Any], Any] | None]
) -> list[tuple[Any, ...]]:
    get = operator.itemgetter(*names)
    active = [(i, p) for i, p in enumerate(procs) if p is not None]
    if not active:
        return [get(r) for r in rows]
    out = []
    for r in rows:
        values = list(get(r))
        for i, p in active:
            values[i] = p(values[i])
        out.append(tuple(values))
    return out
