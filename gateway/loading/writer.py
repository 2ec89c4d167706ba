"""Writing validated rows into a dataset's pool table: one transaction per load.

1. Lock the pool table against other writers (PostgreSQL: SHARE ROW EXCLUSIVE, which readers
   do not wait for). SQLite has one write lock for the whole store, which the audit chain needs
   too: there staging (step 2) writes only the connection's temporary database, and steps 3-5
   run after BEGIN IMMEDIATE (WAL readers keep their snapshot throughout).
2. Stream the file in batches into a temporary staging table — PostgreSQL `COPY`
   (asyncpg `copy_records_to_table`), SQLite `executemany` — each row validated first and its
   L4 / sensitive values sealed and blind-indexed (catalogue.protection.RowEncoder) before it
   is written anywhere, so no clear value is stored, not even in staging.
3. Key checks in SQL over staging (constant memory in Python): a key twice in the file, and in
   append mode a key already in the table, reject the later row.
4. If more rows were rejected than `max_rejects` (0 by default: all or nothing) the transaction
   rolls back and nothing is written. Otherwise the rejected rows leave staging and the mode
   applies: append (INSERT … SELECT), upsert (UPDATE … FROM, then INSERT of the new keys) or
   replace (DELETE, INSERT … SELECT in the same transaction: a reader sees the old table or the
   new one, never half of either).
5. A sync from a full-snapshot source (`snapshot`) then reads the source's keys into a
   temporary table and deletes the rows whose key the source no longer has.
6. The dataset's freshness row (catalogue.freshness) is updated in the same transaction.

Any error, and an interrupt (KeyboardInterrupt, task cancellation) at any point, rolls it all back
(the staging table is temporary: it goes with the transaction or the connection)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import BigInteger, Column, MetaData, Table, Text, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalogue.freshness import upsert_status
from catalogue.pool import ROW_ID, pool_table
from catalogue.protection import DatasetCipher, RowEncoder, blind_column, is_protected
from catalogue.spec import DatasetSpec
from gateway.demo.load import _drop_secondary_indexes
from gateway.loading.readers import LoadError
from gateway.loading.validate import Reject, Validator

BATCH_ROWS = 10_000
SAMPLE = 20  # rejects kept in memory for the message; the rest only in the rejects file
EXTRA_REJECTS = 100  # after the allowance is exceeded, rows still checked (for the report), then stop
ROW = "_row"  # staging: the row's number in the file
REBUILD_MIN = 50_000  # rows into an empty table from which its indexes are rebuilt, not grown

# After each batch: (rows read, rows rejected). Raising from it aborts the load (tests use that).
Progress = Callable[[int, int], None]


class KeyRows(Protocol):
    """A source's rows (`gateway.loading.source.SqlRows`): header, then rows, then close."""

    header: list[str]

    @property
    def rows(self) -> Iterator[tuple[int, list[Any]]]: ...

    def close(self) -> None: ...


class Mode(StrEnum):
    append = "append"
    upsert = "upsert"
    # The member shadows str.replace on a Mode (nothing calls that); the name is the CLI's and
    # the API's `mode=replace`.
    replace = "replace"  # type: ignore[assignment]


@dataclass
class LoadResult:
    dataset: str
    mode: str
    read: int = 0
    loaded: int = 0
    rejected: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    row_count: int = 0
    digest: str | None = None
    key: list[str] = field(default_factory=list)
    rejects_file: str | None = None
    sample: list[Reject] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "sample"}
        out["rejects"] = [{"row": r.row, "column": r.column, "reason": r.reason} for r in self.sample]
        return out


class LoadRejected(LoadError):
    """More rows were rejected than allowed; nothing was written."""

    def __init__(self, result: LoadResult, max_rejects: int, stopped: bool) -> None:
        self.result = result
        first = result.sample[0] if result.sample else None
        where = f"; first: row {first.row}, {first.column or 'row'}: {first.reason}" if first else ""
        more = " (reading stopped there)" if stopped else ""
        allowed = f"at most {max_rejects} allowed" if max_rejects else "none allowed without --max-rejects"
        saved = f"; every reject is in {result.rejects_file}" if result.rejects_file else ""
        super().__init__(
            f"{result.rejected:,} row{'s' if result.rejected != 1 else ''} rejected{more}, {allowed}: "
            f"nothing was loaded{where}{saved}"
        )


class RejectsFile:
    """The rejects, as CSV (row, column, reason), written as they come; the first `keep` are
    kept for the message (over HTTP, where there is no file, the answer carries them). Opened on
    the first reject only."""

    def __init__(self, path: Path | None, keep: int = SAMPLE) -> None:
        self.path = path
        self.keep = keep
        self.count = 0
        self.sample: list[Reject] = []
        self._file: IO[str] | None = None
        self._writer: Any = None

    def add(self, reject: Reject) -> None:
        self.count += 1
        if len(self.sample) < self.keep:
            self.sample.append(reject)
        if self.path is None:
            return
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["row", "column", "reason"])
        self._writer.writerow([reject.row, reject.column, reject.reason])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def resolve_key(spec: DatasetSpec, key: Sequence[str] | None) -> list[str]:
    """The columns that identify a row: as given, else the dataset's entity key, else none."""
    names = {f.name for f in spec.fields}
    cols = list(key) if key else ([spec.entity_field] if spec.entity_field else [])
    for c in cols:
        if c not in names:
            raise LoadError(f"key column {c!r} is not a field of {spec.code}")
    return cols


async def load_rows(
    engine: AsyncEngine,
    spec: DatasetSpec,
    header: Sequence[str],
    rows: Iterator[tuple[int, list[Any]]],
    *,
    mode: Mode = Mode.append,
    key: Sequence[str] | None = None,
    cipher: DatasetCipher | None = None,
    max_rejects: int = 0,
    rejects: RejectsFile | None = None,
    progress: Progress | None = None,
    digest: Callable[[], str | None] | None = None,
    batch_rows: int = BATCH_ROWS,
    on_swap: Callable[[], Any] | None = None,
    watermark: Callable[[], str | None] | None = None,
    before_commit: Callable[[LoadResult], Awaitable[None]] | None = None,
    snapshot: Callable[[], KeyRows] | None = None,
) -> LoadResult:
    """`snapshot`: opens the source's key columns, every row it has now; rows of the dataset
    whose key is not among them are deleted in the same transaction (`data sync` of a source
    declared a full snapshot)."""
    key_cols = resolve_key(spec, key)
    if snapshot is not None and not key_cols:
        raise LoadError(f"{spec.code} has no key: a snapshot sync deletes by key")
    if mode is Mode.upsert and not key_cols:
        raise LoadError(f"{spec.code} has no entity key: pass --key COLUMN[,COLUMN] to upsert on")
    validator = Validator(spec, header, key_cols)
    loaded_spec = replace(spec, fields=validator.fields)
    encoder = RowEncoder(loaded_spec, cipher)
    if encoder.protected and cipher is None:
        raise LoadError(f"{spec.code} has protected fields and no data key")
    rejects = rejects or RejectsFile(None)
    result = LoadResult(spec.code, mode.value, key=key_cols)
    pool = pool_table(spec)
    stored_key = [blind_column(k) if is_protected(spec.field(k)) else k for k in key_cols]
    staging = Table(
        f"_load_{spec.code}",
        MetaData(),
        Column(ROW, BigInteger(), nullable=False),
        *(Column(c, pool.c[c].type if c in pool.c else Text()) for c in encoder.columns),
        prefixes=["TEMPORARY"],
    )
    postgres = engine.dialect.name == "postgresql"
    stopped = False

    async def stage(conn: AsyncConnection) -> None:
        nonlocal stopped
        await conn.run_sync(lambda c: staging.create(c))
        write = _copy_writer(conn, staging) if postgres else _sqlite_writer(conn, staging)
        stopped = await _stage(
            rows, validator, encoder, write, rejects, result, max_rejects, batch_rows, progress
        )

    async def finish(conn: AsyncConnection) -> None:
        if stored_key and result.rejected <= max_rejects:
            await _check_keys(conn, staging, pool, stored_key, key_cols, mode, rejects, result, max_rejects)
        result.sample = rejects.sample
        result.rejects_file = str(rejects.path) if rejects.path and rejects.count else None
        if result.rejected > max_rejects:
            raise LoadRejected(result, max_rejects, stopped)
        indexes: list[str] = []
        if result.loaded >= REBUILD_MIN and mode is not Mode.upsert:
            empty = (
                await conn.execute(
                    select(func.count()).select_from(select(pool.c[ROW_ID]).limit(1).subquery())
                )
            ).scalar_one() == 0
            if empty or (mode is Mode.replace and not postgres):
                # Building an index once over all the rows is several times faster than growing it
                # row by row. Only into an empty table (or a replaced one on SQLite, whose readers
                # keep their snapshot): on PostgreSQL DROP INDEX makes readers wait for the commit.
                indexes = await _drop_secondary_indexes(conn, pool)
        await _apply(conn, staging, pool, encoder.columns, stored_key, mode, result, on_swap)
        if snapshot is not None:
            result.deleted += await _delete_missing(
                conn, spec, pool, key_cols, stored_key, cipher, snapshot, postgres, batch_rows
            )
        for ddl in indexes:
            await conn.exec_driver_sql(ddl)
        result.row_count = int((await conn.execute(select(func.count()).select_from(pool))).scalar_one())
        result.digest = digest() if digest is not None else None
        await record_load(conn, result, watermark() if watermark is not None else None)
        await conn.run_sync(lambda c: staging.drop(c))
        if before_commit is not None:  # the audit event: if it cannot be written, nothing is
            await before_commit(result)

    try:
        async with engine.connect() as conn:
            if postgres:
                # One transaction; the lock keeps other writers out, not readers.
                async with conn.begin():
                    await conn.exec_driver_sql(
                        f"LOCK TABLE {_q(conn, pool.name)} IN SHARE ROW EXCLUSIVE MODE"
                    )
                    await stage(conn)
                    await finish(conn)
            else:
                # SQLite has one write lock per database, which the gateway's audit chain needs
                # too: stage into the connection's own temporary database first (no lock on the
                # store; sealed values only), then take the lock for the checks and the swap.
                try:
                    await conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_q(conn, staging.name)}")
                    await conn.commit()
                    async with conn.begin():
                        await stage(conn)
                    async with conn.begin():
                        raw = await _driver(conn)
                        await raw.execute("BEGIN IMMEDIATE")
                        await finish(conn)
                finally:
                    with contextlib.suppress(Exception):  # a connection broken by the interrupt dies with it
                        await conn.rollback()
                        await conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_q(conn, staging.name)}")
                        await conn.commit()
    finally:
        rejects.close()
    return result


def _q(conn: AsyncConnection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


Writer = Callable[[list[tuple[Any, ...]]], Any]


async def _stage(
    rows: Iterator[tuple[int, list[Any]]],
    validator: Validator,
    encoder: RowEncoder,
    write: Writer,
    rejects: RejectsFile,
    result: LoadResult,
    max_rejects: int,
    batch_rows: int,
    progress: Progress | None,
) -> bool:
    """Validate, seal and stage every row; True if reading stopped early on too many rejects."""
    limit = max_rejects + EXTRA_REJECTS

    def prepare() -> list[tuple[Any, ...]]:
        batch = []
        for row_no, values in islice(rows, batch_rows):
            result.read += 1
            converted = validator.convert(row_no, values)
            if isinstance(converted, list):
                result.rejected += 1
                for r in converted:
                    rejects.add(r)
                if result.rejected > limit:
                    break
                continue
            if result.rejected <= max_rejects:  # past the allowance nothing will be written: stop staging
                batch.append((row_no, *encoder.encode(converted)))
        return batch

    # Two batches in flight: the next one is read, checked and sealed (a thread) while the
    # previous one is written (COPY on PostgreSQL; aiosqlite's own thread on SQLite).
    writing: asyncio.Task[Any] | None = None
    size = 0

    async def written() -> None:
        nonlocal writing
        if writing is not None:
            task, writing = writing, None
            await task
            result.loaded += size
            if progress is not None:
                progress(result.read, result.rejected)

    while True:
        before = result.read
        preparing = asyncio.ensure_future(asyncio.to_thread(prepare))
        try:
            await written()
        except BaseException:
            # The thread cannot be cancelled: let it finish its batch before the rollback, so
            # nothing reads the file after the load has returned.
            await asyncio.wait([preparing])
            raise
        try:
            batch = await preparing
        except BaseException:
            if writing is not None:  # a bad row further on: the write in flight ends before the rollback
                await asyncio.gather(writing, return_exceptions=True)
            raise
        if batch:
            writing, size = asyncio.ensure_future(write(batch)), len(batch)
        if result.rejected > limit or result.read == before:
            await written()
            if progress is not None and not batch:
                progress(result.read, result.rejected)
            return result.rejected > limit


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's own connection under SQLAlchemy's (asyncpg's or aiosqlite's)."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None  # open while SQLAlchemy's is
    return raw


def _copy_writer(conn: AsyncConnection, staging: Table) -> Writer:
    columns = [c.name for c in staging.columns]

    async def write(batch: list[tuple[Any, ...]]) -> None:
        raw = await _driver(conn)
        await raw.copy_records_to_table(staging.name, records=batch, columns=columns)

    return write


def _sqlite_writer(conn: AsyncConnection, staging: Table) -> Writer:
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    columns = [c.name for c in staging.columns]
    sql = (
        f"INSERT INTO {quote(staging.name)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    # SQLAlchemy's own conversions (date → ISO text, Decimal → float…): rows read back through
    # SQLAlchemy exactly as if it had written them.
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in staging.columns]
    convert = [(i, p) for i, p in enumerate(processors) if p is not None]

    async def write(batch: list[tuple[Any, ...]]) -> None:
        if convert:
            out = []
            for row in batch:
                values = list(row)
                for i, process in convert:
                    if values[i] is not None:
                        values[i] = process(values[i])
                out.append(tuple(values))
            batch = out
        raw = await _driver(conn)
        await raw.executemany(sql, batch)

    return write


async def _check_keys(
    conn: AsyncConnection,
    staging: Table,
    pool: Table,
    stored_key: list[str],
    key_cols: list[str],
    mode: Mode,
    rejects: RejectsFile,
    result: LoadResult,
    max_rejects: int,
) -> None:
    q = conn.dialect.identifier_preparer.quote
    s, p = q(staging.name), q(pool.name)
    await conn.exec_driver_sql(
        f"CREATE INDEX {q('ix' + staging.name)} ON {s} ({', '.join(q(k) for k in stored_key)}, {q(ROW)})"
    )
    same = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in stored_key)
    named = ", ".join(key_cols)
    limit = max_rejects - result.rejected + EXTRA_REJECTS + 1
    checks = [
        (
            f"SELECT s.{q(ROW)}, MIN(t.{q(ROW)}) FROM {s} s JOIN {s} t ON {same} AND t.{q(ROW)} < s.{q(ROW)} "  # noqa: S608
            f"GROUP BY s.{q(ROW)} ORDER BY s.{q(ROW)} LIMIT {int(limit)}",
            lambda first: f"duplicate key ({named}): the same as row {first}",
        )
    ]
    if mode is Mode.append:
        checks.append(
            (
                f"SELECT s.{q(ROW)}, NULL FROM {s} s WHERE EXISTS (SELECT 1 FROM {p} t WHERE {same}) "  # noqa: S608
                f"ORDER BY s.{q(ROW)} LIMIT {int(limit)}",
                lambda _: f"key ({named}) already in the table; use --mode upsert to update it",
            )
        )
    bad: set[int] = set()
    for sql, reason in checks:
        # SQLAlchemy types exec_driver_sql's result as one column per row (CursorResult[Any])
        for row_no, first in (await conn.exec_driver_sql(sql)).all():  # type: ignore[misc]
            if row_no in bad:
                continue
            bad.add(row_no)
            result.rejected += 1
            rejects.add(Reject(int(row_no), key_cols[0], reason(first)))
    if bad and result.rejected <= max_rejects:
        ids = sorted(bad)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            await conn.exec_driver_sql(
                f"DELETE FROM {s} WHERE {q(ROW)} IN ({', '.join(str(int(n)) for n in chunk)})"  # noqa: S608
            )
        result.loaded -= len(bad)


async def _apply(
    conn: AsyncConnection,
    staging: Table,
    pool: Table,
    columns: list[str],
    stored_key: list[str],
    mode: Mode,
    result: LoadResult,
    on_swap: Callable[[], Any] | None,
) -> None:
    q = conn.dialect.identifier_preparer.quote
    s, p = q(staging.name), q(pool.name)
    cols = ", ".join(q(c) for c in columns)
    picked = ", ".join(f"s.{q(c)}" for c in columns)
    if mode is Mode.replace:
        result.deleted = (await conn.exec_driver_sql(f"DELETE FROM {p}")).rowcount  # noqa: S608
        if on_swap is not None:  # tests: a reader looks at the table between the two halves
            await on_swap()
    if mode is Mode.upsert:
        same = " AND ".join(f"{p}.{q(k)} = s.{q(k)}" for k in stored_key)
        sets = ", ".join(f"{q(c)} = s.{q(c)}" for c in columns if c not in stored_key)
        if sets:
            updated = await conn.exec_driver_sql(f"UPDATE {p} SET {sets} FROM {s} AS s WHERE {same}")  # noqa: S608
            result.updated = updated.rowcount
        exists = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in stored_key)
        where = f"WHERE NOT EXISTS (SELECT 1 FROM {p} t WHERE {exists}) "  # noqa: S608
    else:
        where = ""
    inserted = await conn.exec_driver_sql(
        f"INSERT INTO {p} ({cols}) SELECT {picked} FROM {s} s {where}ORDER BY s.{q(ROW)}"  # noqa: S608
    )
    result.inserted = inserted.rowcount


async def _delete_missing(
    conn: AsyncConnection,
    spec: DatasetSpec,
    pool: Table,
    key_cols: list[str],
    stored_key: list[str],
    cipher: DatasetCipher | None,
    snapshot: Callable[[], KeyRows],
    postgres: bool,
    batch_rows: int,
) -> int:
    """Delete the rows whose key the snapshot source no longer has; how many. The source's keys
    are staged in a temporary table (constant memory), as stored: a protected key by its blind
    index. A key the source holds that could never have been loaded (fails its check) is skipped.
    A source with no rows at all deletes nothing and fails the sync: an empty snapshot is far
    more often a broken export than a register that emptied overnight."""
    keys = await asyncio.to_thread(snapshot)
    try:
        key_spec = replace(spec, fields=tuple(spec.field(k) for k in key_cols))
        validator = Validator(key_spec, keys.header, key_cols)
        encoder = RowEncoder(replace(key_spec, fields=validator.fields), cipher)
        pick = [encoder.columns.index(c) for c in stored_key]
        kept = Table(
            f"_keep_{spec.code}",
            MetaData(),
            *(Column(c, pool.c[c].type) for c in stored_key),
            prefixes=["TEMPORARY"],
        )
        await conn.run_sync(lambda c: kept.create(c))
        write = _copy_writer(conn, kept) if postgres else _sqlite_writer(conn, kept)
        rows = keys.rows
        seen = 0

        def prepare() -> tuple[int, list[tuple[Any, ...]]]:
            read, batch = 0, []
            for row_no, values in islice(rows, batch_rows):
                read += 1
                converted = validator.convert(row_no, values)
                if isinstance(converted, list):
                    continue
                stored = encoder.encode(converted)
                batch.append(tuple(stored[i] for i in pick))
            return read, batch

        while True:
            read, batch = await asyncio.to_thread(prepare)
            if not read:
                break
            if batch:
                seen += len(batch)
                await write(batch)
        if seen == 0:
            raise LoadError(
                f"the snapshot source of {spec.code} has no rows: nothing deleted, and the sync "
                "fails rather than empty the dataset"
            )
        q = conn.dialect.identifier_preparer.quote
        k, p = q(kept.name), q(pool.name)
        await conn.exec_driver_sql(
            f"CREATE INDEX {q('ix' + kept.name)} ON {k} ({', '.join(q(c) for c in stored_key)})"
        )
        same = " AND ".join(f"k.{q(c)} = {p}.{q(c)}" for c in stored_key)
        gone = await conn.exec_driver_sql(
            f"DELETE FROM {p} WHERE NOT EXISTS (SELECT 1 FROM {k} k WHERE {same})"  # noqa: S608
        )
        await conn.run_sync(lambda c: kept.drop(c))
        return int(gone.rowcount)
    finally:
        await asyncio.to_thread(keys.close)


async def record_load(conn: AsyncConnection, result: LoadResult, sync_watermark: str | None = None) -> None:
    """The dataset's freshness after a load or a sync, in the load's transaction."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "row_count": result.row_count,
        "last_load_at": now,
        "last_load_digest": result.digest,
        "last_load_mode": result.mode,
    }
    if result.inserted or result.updated or result.deleted:
        values["last_change_at"] = now
    if sync_watermark is not None:
        values["sync_watermark"] = sync_watermark
    await upsert_status(conn, result.dataset, values)
