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
    asyncpg), run in autocommit so the statement is its own transaction. Its CTEs lock the head,
    check it still is the (seq, hash) this sink wrote last, insert all events from one JSON
    parameter (`jsonb_populate_recordset`), move the head and set `synchronous_commit` for that
    transaction: one round trip, one durable commit. If the head moved (another process
    appended, or this sink's first batch) nothing is written and the batch is redone in an
    explicit transaction that locks the head first (BEGIN, SELECT ... FOR UPDATE, the same
    statement, COMMIT).
  - SQLite: a dedicated sqlite3 connection of the writer's own (synchronous=FULL, so no PRAGMA
    toggling), and the whole transaction (BEGIN IMMEDIATE, head, hashes, one multi-row INSERT of
    the events, COMMIT) runs in one worker-thread call: one hop off the loop per batch instead of
    ~10, and five statements whatever the batch's size."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import operator
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.access_log import AccessEvent
from gateway.audit.chain import GENESIS_HASH, canonical_time, event_hash
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent
from gateway.audit.variables import VariableCipher
from gateway.audit.witness import ChainWitness

EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__

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
        "detail": orjson.dumps(
            {"fields": event.fields, "reads": event.reads}, option=orjson.OPT_SORT_KEYS
        ).decode(),
        "subject": event.subject,
        "row_count": rows,
        "variables_enc": cipher.seal(event.request_id, event.variables) if cipher else None,
        "signature_kid": event.signature_kid,
    }


EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in EVENTS.c)
Batch = list[tuple[AccessEvent, "asyncio.Future[None]"]]

# Raw-driver statements. Identifiers come from the models, never from input.
PG_LOCK_HEAD = "SELECT seq, hash FROM audit_chain_head WHERE id = $1 FOR UPDATE"
PG_SEED_HEAD = "INSERT INTO audit_chain_head (id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING"
SQLITE_READ_HEAD = "SELECT seq, hash FROM audit_chain_head WHERE id = ?"
SQLITE_SEED_HEAD = "INSERT INTO audit_chain_head (id, seq, hash) VALUES (?, 0, ?) ON CONFLICT DO NOTHING"
SQLITE_MOVE_HEAD = "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = ?"
_SQLITE_ROW = f"({', '.join('?' * len(EVENT_COLUMNS))})"


@functools.lru_cache(maxsize=64)
def sqlite_insert_events(n: int) -> str:
    """One INSERT of n rows. One statement per batch instead of executemany's step per row: each
    step gives up the GIL and has to win it back from the busy event loop before the next row."""
    return (
        f"INSERT INTO audit_event ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608
        f"VALUES {', '.join([_SQLITE_ROW] * n)}"
    )


assert (HEAD.name, EVENTS.name) == ("audit_chain_head", "audit_event")


def _bind_processors(dialect: Dialect, table: Any, names: Sequence[str]) -> list[Callable[[Any], Any] | None]:
    """What SQLAlchemy would apply to each column's value on insert (e.g. UTCDateTime's checks),
    so the raw-driver paths store exactly what `insert(EVENTS)` stored."""
    return [table.c[n].type.bind_processor(dialect) for n in names]


def _processed(
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


def _link(rows: list[dict[str, Any]], seq: int, prev_hash: str) -> tuple[int, str]:
    """Number and chain the rows after (seq, prev_hash), in queue order; → the new head."""
    for row in rows:
        seq += 1
        row["seq"] = seq
        row["prev_hash"] = prev_hash
        row["hash"] = prev_hash = event_hash(row)
    return seq, prev_hash


def _events_json(rows: list[dict[str, Any]]) -> str:
    """The batch for PostgreSQL's jsonb_populate_recordset: one parameter, encoded in C, instead
    of an array per column (asyncpg's per-element array encoding was most of the writer's CPU).
    Times go as canonical UTC text, which `timestamp` reads back to the same instant."""
    return orjson.dumps([{**r, "occurred_at": canonical_time(r["occurred_at"])} for r in rows]).decode()


def _pg_append_sql() -> str:
    """One statement: check the head, insert the events ($6, a JSON array of rows), move the head,
    and force a durable commit."""
    cols = ", ".join(EVENT_COLUMNS)
    return f"""
WITH h AS (SELECT seq, hash FROM {HEAD.name} WHERE id = $1 FOR UPDATE),
ok AS (SELECT 1 FROM h WHERE seq = $2 AND hash = $3),
e AS (INSERT INTO {EVENTS.name} ({cols})
      SELECT {cols} FROM jsonb_populate_recordset(NULL::{EVENTS.name}, $6::jsonb)
      WHERE EXISTS (SELECT 1 FROM ok)),
u AS (UPDATE {HEAD.name} SET seq = $4, hash = $5 WHERE id = $1 AND EXISTS (SELECT 1 FROM ok)
      RETURNING 1)
SELECT set_config('synchronous_commit', 'on', true) AS sync, (SELECT seq FROM h) AS seq,
       (SELECT hash FROM h) AS hash, (SELECT count(*) FROM u) AS moved"""  # noqa: S608


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
        path = engine.url.database if self._sqlite else None
        # SQLite: the writer's own connection (a file database only; ":memory:" is per connection)
        self._sqlite_path = path if path and path != ":memory:" and not path.startswith("file:") else None
        self._sqlite_conn: sqlite3.Connection | None = None
        self._sqlite_rows_per_insert = 1
        self._sqlite_mutex = threading.Lock()
        self._ev_procs = _bind_processors(dialect, EVENTS, EVENT_COLUMNS)

    async def record(self, event: AccessEvent) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or used again from a new event loop
            # (a connection held on the old loop cannot be closed from this one: it is dropped)
            self._loop, self._writer, self._pending, self._conn, self._raw = loop, None, [], None, None
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((event, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._drain())
        # A cancelled caller cancels only its own wait: its event stays queued and is written.
        await done  # raises if the transaction holding our event failed

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

    @staticmethod
    def _fail(batch: Batch, err: BaseException) -> None:
        failure = err if isinstance(err, Exception) else RuntimeError(f"audit append cut off: {err!r}")
        for _, f in batch:
            if not f.done():
                f.set_exception(failure)

    async def _flush(self, conn: AsyncConnection | None) -> bool:
        """Write the oldest queued events (up to MAX_BATCH) in one transaction and settle their
        futures: committed → result, failed → the error (each of those callers fails closed)."""
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        try:
            await self._append(conn, [e for e, _ in batch])
        except BaseException as err:
            self._head = None
            self._fail(batch, err)
            if not isinstance(err, Exception):
                self._fail(self._pending, err)
                self._pending = []
                raise
            return False
        self.batches += 1
        for _, f in batch:
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
            # Link and encode here, against the head this sink wrote last: Python work in the worker
            # thread fought the event loop for the GIL (twice the context switches per request).
            prepared = None
            if self._head is not None:
                seq, last = _link(rows, *self._head)
                prepared = (self._head, (seq, last), _processed(rows, EVENT_COLUMNS, self._ev_procs))
            self._head = await asyncio.to_thread(self._append_sqlite_file, rows, prepared)
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

    @staticmethod
    def _pg_args(rows: list[dict[str, Any]], expect: tuple[int, str], head: tuple[int, str]) -> list[Any]:
        return [HEAD_ID, expect[0], expect[1], head[0], head[1], _events_json(rows)]

    async def _append_asyncpg(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if self._raw is None:
            self._raw = (await conn.get_raw_connection()).driver_connection
        raw = self._raw
        assert raw is not None
        if self._head is not None:
            # Fast path: one autocommitted statement, valid only if the head is still ours.
            expect = self._head
            seq, last = _link(rows, *expect)
            got = await raw.fetchrow(self._pg_sql, *self._pg_args(rows, expect, (seq, last)))
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
            seq, last = _link(rows, *expect)
            got = await raw.fetchrow(self._pg_sql, *self._pg_args(rows, expect, (seq, last)))
            if got is None or got["moved"] != 1:  # cannot happen with the head locked
                raise RuntimeError(f"audit chain head moved while locked: {dict(got or {})}")
        self._head = (seq, last)

    # -- SQLite ---------------------------------------------------------------------------------

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite_conn is None:
            assert self._sqlite_path is not None
            conn = sqlite3.connect(
                self._sqlite_path, timeout=30, isolation_level=None, check_same_thread=False
            )
            # The gateway's engine runs synchronous=NORMAL, which in WAL mode may lose the last
            # commits on power loss; the audit commit must survive that, so this connection
            # (used for nothing else) syncs fully.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            # 32766 bound parameters since SQLite 3.32 (a whole MAX_BATCH in one INSERT), fewer
            # where the library was built with a lower limit
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._sqlite_rows_per_insert = max(1, limit // len(EVENT_COLUMNS))
            self._sqlite_conn = conn
        return self._sqlite_conn

    def _append_sqlite_file(
        self,
        rows: list[dict[str, Any]],
        prepared: tuple[tuple[int, str], tuple[int, str], list[tuple[Any, ...]]] | None,
    ) -> tuple[int, str]:
        """One batch in a worker thread (one hop off the event loop); → the new head.
        `prepared`: (expected head, new head, encoded rows) linked by the caller; used only if the
        head still is the expected one (another process may have appended since)."""
        with self._sqlite_mutex:
            conn = self._sqlite_connection()
            try:
                # Takes the database write lock now, so no other process (or sink) can read the
                # same head before we commit.
                conn.execute("BEGIN IMMEDIATE")
                head = conn.execute(SQLITE_READ_HEAD, (HEAD_ID,)).fetchone()
                if head is None:
                    conn.execute(SQLITE_SEED_HEAD, (HEAD_ID, GENESIS_HASH))
                    head = (0, GENESIS_HASH)
                first = int(head[0])
                if prepared is not None and prepared[0] == (first, str(head[1])):
                    (seq, last), params = prepared[1], prepared[2]
                else:
                    seq, last = _link(rows, first, str(head[1]))
                    params = _processed(rows, EVENT_COLUMNS, self._ev_procs)
                per_insert = self._sqlite_rows_per_insert
                for i in range(0, len(params), per_insert):
                    chunk = params[i : i + per_insert]
                    conn.execute(sqlite_insert_events(len(chunk)), [v for row in chunk for v in row])
                conn.execute(SQLITE_MOVE_HEAD, (seq, last, HEAD_ID))
                conn.execute("COMMIT")
                return seq, last
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

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
        seq, prev_hash = _link(rows, seq, prev_hash)
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
