"""`ChainedAuditLog`: the `AccessLog` sink that appends each access event to the hash chain.

Group commit. Each `record()` queues its event and a future, and one writer task per sink (started
when the queue goes from empty to non-empty, gone when it drains) writes *everything queued so
far* (up to MAX_BATCH) in one transaction, then settles the futures of that batch: committed →
every caller in it returns, failed → every caller in it raises (fail closed). A caller therefore
returns only after the transaction holding its event is durable. Under load one commit (one
fsync) serves many requests; alone, a request pays one transaction.

One batch = one transaction: lock the chain head, read (seq, hash), insert the events with
seq + 1, seq + 2, ... each linked to the previous hash, move the head, commit (the officers'
field-access index is filled from the stored events afterwards, outside the request path:
gateway.audit.field_index). The lock is what keeps several worker processes from forking the
chain:
  - PostgreSQL: a row lock (`FOR UPDATE`) on the one-row `audit_chain_head`, with
    `synchronous_commit` forced on for the transaction;
  - SQLite: `BEGIN IMMEDIATE`, which takes the database write lock before the head is read, on a
    connection running `synchronous=FULL`.

Cheap appends (the writer runs on the gateway's own event loop, so every await is a trip through
a busy loop):
  - PostgreSQL: one statement per batch on the raw asyncpg connection (prepared, cached by
    asyncpg), run in autocommit so the statement is its own transaction. Its CTEs move the head
    (an UPDATE, which locks the row) only if it still is the (seq, hash) this sink wrote last,
    insert all events only if it moved (a batch of up to PG_TYPED_ROWS as typed parameters, a
    larger one from one JSON parameter through `jsonb_populate_recordset`), and set
    `synchronous_commit` for that transaction: one round trip, one durable commit. If the head
    moved (another process appended, or this sink's first batch) nothing is written and the
    batch is redone in an explicit transaction that locks the head first (BEGIN, SELECT ... FOR
    UPDATE, the same statement, COMMIT).
  - SQLite (a database file): the writer's own sqlite3 connection (synchronous=FULL, so no
    PRAGMA toggling) runs the whole transaction (BEGIN IMMEDIATE, head, one multi-row INSERT,
    COMMIT) in one call, with the rows already linked here against the head this sink wrote
    last: for the gateway (`hold_connection`) in a process of its own, one socket round trip per
    batch with no GIL shared with the loop; for one-off users in a worker thread
    (gateway.audit.sqlite_writer)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.access_log import AccessEvent
from gateway.audit.chain import GENESIS_HASH, LINK_COLUMNS, canonical_time, link
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent
from gateway.audit.rows import EVENT_COLUMNS, bind_processors, event_row, processed
from gateway.audit.sqlite_writer import Batch as SqliteBatch
from gateway.audit.sqlite_writer import Head, SqliteChainFile, WriterProcess
from gateway.audit.variables import VariableCipher
from gateway.audit.witness import ChainWitness
from gateway.db import table_of
from gateway.metrics import AUDIT_APPEND_SECONDS, AUDIT_BATCH_EVENTS, AUDIT_COMMIT_SECONDS, AUDIT_FAILURES
from gateway.request_log import note_event

EVENTS = table_of(AuditEvent)
HEAD = table_of(AuditChainHead)

MAX_BATCH = 512


Batch = list[tuple[AccessEvent, "asyncio.Future[None]", float]]  # (event, its waiter, queued at)

# Raw-driver statements. Identifiers come from the models, never from input.
PG_LOCK_HEAD = "SELECT seq, hash FROM audit_chain_head WHERE id = $1 FOR UPDATE"
PG_SEED_HEAD = "INSERT INTO audit_chain_head (id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING"
assert (HEAD.name, EVENTS.name) == ("audit_chain_head", "audit_event")


def _events_json(rows: list[dict[str, Any]]) -> str:
    """The batch for PostgreSQL's jsonb_populate_recordset: one parameter, encoded in C, instead
    of an array per column (asyncpg's per-element array encoding was most of the writer's CPU).
    Times go as canonical UTC text, which `timestamp` reads back to the same instant."""
    return orjson.dumps([{**r, "occurred_at": canonical_time(r["occurred_at"])} for r in rows]).decode()


# Batches of up to this many events pass each value as its own typed parameter (asyncpg's binary
# encoding, one prepared statement per batch size); larger ones go as one JSON parameter. Under
# load most batches hold 1-4 events, and parsing their JSON (jsonb_recv) was ~10 % of
# PostgreSQL's CPU per batch.
PG_TYPED_ROWS = 8


def _pg_append_sql(typed_rows: int = 0) -> str:
    """One statement: move the head if it still is the expected one, insert the events if it
    moved, and force a durable commit. The events: `typed_rows` rows of typed parameters from
    $6 on, or (0) $6, a JSON array of rows."""
    cols = ", ".join(EVENT_COLUMNS)
    if typed_rows:
        pg = postgresql.dialect()
        types = [EVENTS.c[n].type.compile(dialect=pg) for n in EVENT_COLUMNS]
        width = len(EVENT_COLUMNS)
        values = ", ".join(
            "(" + ", ".join(f"${6 + r * width + i}::{t}" for i, t in enumerate(types)) + ")"
            for r in range(typed_rows)
        )
        source = f"SELECT {cols} FROM (VALUES {values}) AS v ({cols})"  # noqa: S608
    else:
        source = f"SELECT {cols} FROM jsonb_populate_recordset(NULL::{EVENTS.name}, $6::jsonb)"  # noqa: S608
    # The head's UPDATE is the compare-and-set: it locks the row (waiting for a writer that
    # holds it, then re-reading the row that writer committed) and moves it only if it still is
    # (seq, hash) = ($2, $3); the events are inserted only if it moved.
    return f"""
WITH u AS (UPDATE {HEAD.name} SET seq = $4, hash = $5 WHERE id = $1 AND seq = $2 AND hash = $3
           RETURNING 1),
e AS (INSERT INTO {EVENTS.name} ({cols})
      {source}
      WHERE EXISTS (SELECT 1 FROM u))
SELECT set_config('synchronous_commit', 'on', true) AS sync, (SELECT count(*) FROM u) AS moved"""  # noqa: S608


class ChainedAuditLog:
    """Append-only, SM3-chained audit sink over the gateway's async engine, with group commit."""

    IDLE_RECYCLE = 30.0  # seconds: a writer connection idle this long is replaced before use

    def __init__(
        self, engine: AsyncEngine, cipher: VariableCipher | None = None, *, hold_connection: bool = False
    ) -> None:
        """`hold_connection`: keep the writer's connection between bursts (the gateway does, and
        calls `aclose()` at shutdown); otherwise it goes back to the pool whenever the queue
        empties, so a one-off user (a CLI command, a test) needs no closing."""
        self._engine = engine
        self._hold = hold_connection
        dialect = engine.dialect
        self._sqlite = dialect.name == "sqlite"
        self._cipher = cipher
        self._pending: Batch = []
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # how many transactions were committed (for tests and the bench)
        self.witness = ChainWitness()  # what was committed, for the checkpoint and alert jobs
        self._conn: AsyncConnection | None = None  # the writer's, kept between bursts
        # asyncpg's connection under self._conn, reset with it: fetched once per checkout, not
        # per batch (get_raw_connection is a greenlet hop, ~25 µs a batch)
        self._raw: Any = None
        self._conn_used = 0.0
        # The (seq, hash) this sink last committed (None: unknown). PostgreSQL's one-statement
        # append is anchored on it; SQLite links the next batch on the loop against it.
        self._head: tuple[int, str] | None = None
        self._asyncpg = dialect.name == "postgresql" and dialect.driver == "asyncpg"
        self._pg_sql = _pg_append_sql() if self._asyncpg else ""
        self._pg_typed = [_pg_append_sql(n) for n in range(PG_TYPED_ROWS + 1)] if self._asyncpg else []
        path = engine.url.database if self._sqlite else None
        # SQLite: the writer's own connection (a file database only; ":memory:" is per connection),
        # in a process of its own for the gateway, in a worker thread for one-off users
        path = path if path and path != ":memory:" and not path.startswith("file:") else None
        self._sqlite_path = path
        self._sqlite_process = (
            WriterProcess(path, EVENT_COLUMNS, HEAD_ID) if path and hold_connection else None
        )
        self._sqlite_file = (
            SqliteChainFile(path, EVENT_COLUMNS, HEAD_ID) if path and not hold_connection else None
        )
        self._procs = bind_processors(dialect, EVENTS, EVENT_COLUMNS)
        # SQLite's writer relinks encoded rows by setting these values as they are
        assert all(p is None for n, p in zip(EVENT_COLUMNS, self._procs, strict=True) if n in LINK_COLUMNS)
        self._sqlite_mutex = threading.Lock()  # a thread left running by a previous event loop

    async def start(self) -> None:
        """Start what the writer needs before the first request (SQLite: its process), so the
        first request does not wait for it; a failure here is retried by the first append."""
        self._on_loop()
        if self._sqlite_process is not None:
            await self._sqlite_process.start()

    def _on_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or used again from a new event loop
            # (a connection held on the old loop cannot be closed from this one: it is dropped)
            self._loop, self._writer, self._pending, self._conn, self._raw = loop, None, [], None, None
            if self._sqlite_process is not None:
                self._sqlite_process.abandon()
        return loop

    async def record(self, event: AccessEvent) -> None:
        await self.submit(event)

    def submit(self, event: AccessEvent) -> asyncio.Future[None]:
        """Queue the event now and return what to await: settled once the transaction holding it
        is committed (durably), or failed with that transaction's error. The caller may do
        other work for its answer meanwhile (sign it: gateway.access_log.answer_once_recorded)
        but must await this before anything leaves. A cancelled wait cancels only that wait:
        the event stays queued and is written."""
        note_event(event)  # the request's access-log line names its principal and code
        loop = self._on_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((event, done, time.perf_counter()))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        """The writer: batches until the queue is empty. It is only seen as gone (`done()`) once
        nothing is queued: events queued while it hands its connection back are written too.
        Holding the connection between bursts saves a pool checkout and checkin per burst, which
        is per event when requests come one at a time (~0.15 ms of CPU on PostgreSQL)."""
        while self._pending:
            conn = None if self._sqlite_path else await self._connection()
            if conn is None and not self._sqlite_path:
                return  # no connection: everyone queued has failed closed
            try:
                ok = await self._flush(conn)
            except BaseException:
                await self._drop_connection()
                raise
            if not ok or (not self._hold and not self._pending):
                # A failed batch may have left the connection broken: hand it back (the pool's
                # reset rolls back or discards it); the next batch takes a fresh one.
                await self._drop_connection()

    async def _connection(self) -> AsyncConnection | None:
        now = asyncio.get_running_loop().time()
        if self._conn is not None and now - self._conn_used > self.IDLE_RECYCLE:
            await self._drop_connection()  # idle a while: the server may have closed it
        if self._conn is None:
            try:
                self._conn = await self._engine.connect()
            except BaseException as err:
                self._fail(self._pending, err)
                self._pending = []
                if not isinstance(err, Exception):
                    raise
                return None
        self._conn_used = now
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())

    async def aclose(self) -> None:
        """Hand the writer's connection back (at shutdown, after the last request)."""
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await self._writer
        if self._loop is asyncio.get_running_loop():
            await self._drop_connection()
            if self._sqlite_process is not None:
                await self._sqlite_process.aclose()

    @staticmethod
    def _fail(batch: Batch, err: BaseException) -> None:
        failure = err if isinstance(err, Exception) else RuntimeError(f"audit append cut off: {err!r}")
        for _, f, _ in batch:
            if not f.done():
                f.set_exception(failure)

    async def _flush(self, conn: AsyncConnection | None) -> bool:
        """Write the oldest queued events (up to MAX_BATCH) in one transaction and settle their
        futures: committed → result, failed → the error (each of those callers fails closed)."""
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        started = time.perf_counter()
        try:
            await self._append(conn, [e for e, _, _ in batch])
        except BaseException as err:
            AUDIT_FAILURES.inc()
            self._head = None
            self._fail(batch, err)
            if not isinstance(err, Exception):
                self._fail(self._pending, err)
                self._pending = []
                raise
            return False
        now = time.perf_counter()
        AUDIT_COMMIT_SECONDS.observe(now - started)
        AUDIT_BATCH_EVENTS.observe(len(batch))
        self.batches += 1
        for _, f, queued in batch:
            AUDIT_APPEND_SECONDS.observe(now - queued)  # queued → durable, per event
            if not f.done():
                f.set_result(None)
        return True

    async def _append(self, conn: AsyncConnection | None, events: list[AccessEvent]) -> None:
        rows = await self._write(conn, events)
        self.witness.appended(rows)  # committed: each row has its seq and hashes now

    async def _write(self, conn: AsyncConnection | None, events: list[AccessEvent]) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        rows = [event_row(e, now, self._cipher) for e in events]  # sealing happens outside the lock
        if self._sqlite_path:
            await self._append_sqlite_file(rows)
            return rows
        assert conn is not None
        if self._asyncpg:
            await self._append_asyncpg(conn, rows)
        elif self._sqlite:
            await self._append_sqlite(conn, rows)
        else:
            await self._append_generic(conn, rows)
        return rows

    # -- PostgreSQL (asyncpg) ---------------------------------------------------------------

    def _pg_statement(
        self, rows: list[dict[str, Any]], expect: tuple[int, str], head: tuple[int, str]
    ) -> tuple[str, list[Any]]:
        """The append statement for this batch and its arguments."""
        args: list[Any] = [HEAD_ID, expect[0], expect[1], head[0], head[1]]
        if len(rows) > PG_TYPED_ROWS:
            return self._pg_sql, [*args, _events_json(rows)]
        for values in processed(rows, EVENT_COLUMNS, self._procs):
            args.extend(values)
        return self._pg_typed[len(rows)], args

    async def _append_asyncpg(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if self._raw is None:
            self._raw = (await conn.get_raw_connection()).driver_connection
        raw = self._raw
        assert raw is not None
        if self._head is not None:
            # Fast path: one autocommitted statement, valid only if the head is still ours.
            expect = self._head
            seq, last = link(rows, *expect)
            sql, args = self._pg_statement(rows, expect, (seq, last))
            got = await raw.fetchrow(sql, *args)
            if got is not None and got["moved"] == 1:
                self._head = (seq, last)
                return
            self._head = None  # moved under us: nothing was written; redo under the lock
        async with raw.transaction():
            head = await raw.fetchrow(PG_LOCK_HEAD, HEAD_ID)
            if head is None:
                # The migration seeds the head; this covers tables made by metadata.create_all.
                await raw.execute(PG_SEED_HEAD, HEAD_ID, GENESIS_HASH)
                head = await raw.fetchrow(PG_LOCK_HEAD, HEAD_ID)
            expect = (int(head["seq"]), str(head["hash"]))
            seq, last = link(rows, *expect)
            sql, args = self._pg_statement(rows, expect, (seq, last))
            got = await raw.fetchrow(sql, *args)
            if got is None or got["moved"] != 1:  # cannot happen with the head locked
                raise RuntimeError(f"audit chain head moved while locked: {dict(got or {})}")
        self._head = (seq, last)

    # -- SQLite ---------------------------------------------------------------------------------

    async def _append_sqlite_file(self, rows: list[dict[str, Any]]) -> None:
        # Linked and encoded here against the head this sink wrote last: the writer links again
        # only if another process appended since (and then this sink relinks its rows to match).
        linked_to = self._head
        if linked_to is not None:
            link(rows, *linked_to)
        else:  # the head is unknown (first batch, after a failure): the writer links them
            for row in rows:
                row.update(dict.fromkeys(LINK_COLUMNS))
        batch = (rows, processed(rows, EVENT_COLUMNS, self._procs))
        if self._sqlite_process is not None:
            before, after = await self._sqlite_process.append(batch, linked_to)
        else:
            before, after = await asyncio.to_thread(self._in_thread, batch, linked_to)
        if before != linked_to and link(rows, *before) != after:
            raise RuntimeError(f"audit writer linked the batch differently: {before} → {after}")
        self._head = after

    def _in_thread(self, batch: SqliteBatch, linked_to: Head | None) -> tuple[Head, Head]:
        assert self._sqlite_file is not None
        with self._sqlite_mutex:
            return self._sqlite_file.append(batch, linked_to)

    async def _append_sqlite(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """SQLite without a file path (":memory:", URI names): on the engine's connection."""
        await conn.exec_driver_sql("PRAGMA synchronous=FULL")
        try:
            # pysqlite only BEGINs (deferred) before DML; an explicit BEGIN IMMEDIATE takes the
            # write lock now, so no other process can read the same head before we commit.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await self._append_generic(conn, rows)
        except BaseException:
            await conn.rollback()  # before the PRAGMA below, so nothing half-done gets committed
            raise
        finally:
            await conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            await conn.commit()

    # -- any other driver (SQLAlchemy Core) -----------------------------------------------------

    async def _append_generic(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if not self._sqlite:
            # A server or role configured with synchronous_commit=off must not weaken fail closed.
            await conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
        seq, prev_hash = await self._lock_head(conn)
        seq, prev_hash = link(rows, seq, prev_hash)
        await conn.execute(insert(EVENTS), rows)
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
