"""`ChainedAuditLog`: the `AccessLog` sink that appends each access event to the hash chain.

One append = one transaction: lock the chain head, read (seq, hash), insert the event with
seq + 1 and prev_hash = head hash, move the head, commit. The lock is what keeps several
worker processes from forking the chain:
  - PostgreSQL: `SELECT ... FOR UPDATE` on the one-row `audit_chain_head`;
  - SQLite: `BEGIN IMMEDIATE`, which takes the database write lock before the head is read.
`record()` returns only after the commit (fail closed: an exception propagates to the caller).
Each append is its own commit; group commit (batching concurrent record() calls) is a later step."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.access_log import AccessEvent
from gateway.audit.chain import GENESIS_HASH, event_hash
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent

EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__


def event_row(event: AccessEvent, occurred_at: datetime) -> dict[str, Any]:
    """The audit_event columns for an access event, minus seq / prev_hash / hash."""
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
        "detail": orjson.dumps({"fields": event.fields, "reads": event.reads},
                               option=orjson.OPT_SORT_KEYS).decode(),
    }


class ChainedAuditLog:
    """Append-only, SM3-chained audit sink over the gateway's async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        # Serialises this process's appends so they queue here rather than contending for the
        # database lock (SQLite's busy handler backs off in coarse sleeps).
        self._lock = asyncio.Lock()

    async def record(self, event: AccessEvent) -> None:
        async with self._lock, self._engine.connect() as conn:
            if self._sqlite:
                await self._append_sqlite(conn, event)
            else:
                await self._append(conn, event)

    async def _append_sqlite(self, conn: AsyncConnection, event: AccessEvent) -> None:
        # The shared engine runs synchronous=NORMAL, which in WAL mode may lose the last commits
        # on power loss; the audit commit must survive that, so this connection syncs fully.
        await conn.exec_driver_sql("PRAGMA synchronous=FULL")
        try:
            # pysqlite only BEGINs (deferred) before DML; an explicit BEGIN IMMEDIATE takes the
            # write lock now, so no other process can read the same head before we commit.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await self._append(conn, event)
        except BaseException:
            await conn.rollback()  # before the PRAGMA below, so nothing half-done gets committed
            raise
        finally:
            await conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            await conn.commit()

    async def _append(self, conn: AsyncConnection, event: AccessEvent) -> None:
        if not self._sqlite:
            # A server or role configured with synchronous_commit=off must not weaken fail closed.
            await conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
        seq, prev_hash = await self._lock_head(conn)
        row = event_row(event, datetime.now(UTC))
        row["seq"] = seq + 1
        row["prev_hash"] = prev_hash
        row["hash"] = event_hash(row)
        await conn.execute(insert(EVENTS), [row])
        await conn.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(seq=row["seq"], hash=row["hash"]))
        await conn.commit()

    async def _lock_head(self, conn: AsyncConnection) -> tuple[int, str]:
        query = select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID)
        if not self._sqlite:
            query = query.with_for_update()
        head = (await conn.execute(query)).first()
        if head is None:
            # The migration seeds the head; this covers tables made by metadata.create_all.
            ins = (sqlite_insert if self._sqlite else pg_insert)(HEAD)
            await conn.execute(ins.values(id=HEAD_ID, seq=0, hash=GENESIS_HASH).on_conflict_do_nothing())
            head = (await conn.execute(query)).one()
        return int(head.seq), str(head.hash)
