"""`ChainedAuditLog`: the `AccessLog` sink that appends each access event to the hash chain.

Group commit. Concurrent `record()` calls in one process are batched: each caller queues its
event and then waits for the writer lock; whoever gets the lock writes *everything queued so far*
in one transaction, and the callers whose events went into that batch find them committed when
they get the lock in turn (or are woken by their future). Every caller still returns only after
the transaction holding its event has committed, and raises if that transaction failed (fail
closed). Under load one fsync serves many requests; alone, a request pays one transaction as
before.

One batch = one transaction: lock the chain head, read (seq, hash), insert the events with
seq + 1, seq + 2, ... each linked to the previous hash, insert their field-access index rows,
move the head, commit. The lock is what keeps several worker processes from forking the chain:
  - PostgreSQL: `SELECT ... FOR UPDATE` on the one-row `audit_chain_head`
    (with `synchronous_commit` forced on for the transaction);
  - SQLite: `BEGIN IMMEDIATE`, which takes the database write lock before the head is read
    (with `synchronous=FULL` for the transaction)."""

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
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent, AuditFieldAccess
from gateway.audit.variables import VariableCipher

EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__
FIELD_ACCESS = AuditFieldAccess.__table__

MAX_BATCH = 512


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
        "detail": orjson.dumps({"fields": event.fields, "reads": event.reads},
                               option=orjson.OPT_SORT_KEYS).decode(),
        "subject": event.subject,
        "row_count": rows,
        "variables_enc": cipher.seal(event.request_id, event.variables) if cipher else None,
        "signature_kid": event.signature_kid,
    }


def field_access_rows(seq: int, event: AccessEvent) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], str] = {}
    for f in event.fields:
        key = (str(f.get("dataset")), str(f.get("field")))
        seen.setdefault(key, str(f.get("action", f.get("decision", ""))))
    return [{"seq": seq, "dataset": d, "field": f, "action": a} for (d, f), a in seen.items()]


class ChainedAuditLog:
    """Append-only, SM3-chained audit sink over the gateway's async engine, with group commit."""

    def __init__(self, engine: AsyncEngine, cipher: VariableCipher | None = None) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._cipher = cipher
        # Serialises this process's batches so they queue here rather than contending for the
        # database lock (SQLite's busy handler backs off in coarse sleeps).
        self._lock = asyncio.Lock()
        self._pending: list[tuple[AccessEvent, asyncio.Future[None]]] = []
        self.batches = 0  # how many transactions were committed (for tests and the bench)

    async def record(self, event: AccessEvent) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        while not done.done():
            async with self._lock:
                if not done.done():
                    await self._flush()
        done.result()  # raises if the transaction holding our event failed

    async def _flush(self) -> None:
        """Write the oldest queued events (up to MAX_BATCH) in one transaction and settle their
        futures: committed → result, failed → the error (each of those callers fails closed)."""
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        try:
            await self._write(batch)
        except BaseException as err:
            failure = err if isinstance(err, Exception) else RuntimeError(f"audit append cut off: {err!r}")
            for _, f in batch:
                if not f.done():
                    f.set_exception(failure)
            if not isinstance(err, Exception):
                raise
            return
        for _, f in batch:
            if not f.done():
                f.set_result(None)

    async def _write(self, batch: list[tuple[AccessEvent, asyncio.Future[None]]]) -> None:
        if not batch:
            return
        events = [e for e, _ in batch]
        async with self._engine.connect() as conn:
            if self._sqlite:
                await self._append_sqlite(conn, events)
            else:
                await self._append(conn, events)
        self.batches += 1

    async def _append_sqlite(self, conn: AsyncConnection, events: list[AccessEvent]) -> None:
        # The shared engine runs synchronous=NORMAL, which in WAL mode may lose the last commits
        # on power loss; the audit commit must survive that, so this connection syncs fully.
        await conn.exec_driver_sql("PRAGMA synchronous=FULL")
        try:
            # pysqlite only BEGINs (deferred) before DML; an explicit BEGIN IMMEDIATE takes the
            # write lock now, so no other process can read the same head before we commit.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await self._append(conn, events)
        except BaseException:
            await conn.rollback()  # before the PRAGMA below, so nothing half-done gets committed
            raise
        finally:
            await conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            await conn.commit()

    async def _append(self, conn: AsyncConnection, events: list[AccessEvent]) -> None:
        if not self._sqlite:
            # A server or role configured with synchronous_commit=off must not weaken fail closed.
            await conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
        now = datetime.now(UTC)
        rows = [event_row(e, now, self._cipher) for e in events]  # sealing happens outside the lock
        seq, prev_hash = await self._lock_head(conn)
        access: list[dict[str, Any]] = []
        for event, row in zip(events, rows, strict=True):
            seq += 1
            row["seq"] = seq
            row["prev_hash"] = prev_hash
            row["hash"] = prev_hash = event_hash(row)
            access.extend(field_access_rows(seq, event))
        await conn.execute(insert(EVENTS), rows)
        if access:
            await conn.execute(insert(FIELD_ACCESS), access)
        await conn.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(seq=seq, hash=prev_hash))
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
