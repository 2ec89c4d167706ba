"""Loading the demo into a store: catalogue entries first, then each dataset's rows.

- Idempotent. Departments and datasets already in the catalogue are left as they are (a
  steward's reclassification survives a restart), and a dataset whose pool table already
  holds rows is skipped, so loading twice never duplicates anything.
- Atomic per dataset: the emptiness check and all of a dataset's rows run in one
  transaction, under a lock that makes a concurrent loader wait and then skip.
- Fast. PostgreSQL: one binary COPY per dataset (asyncpg `copy_records_to_table`) fed by an
  async generator, so the server ingests while Python generates. SQLite: `executemany` on
  the driver connection in large batches, the next batch generated while the previous one
  is written (aiosqlite runs SQLite in its own thread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalogue import service
from catalogue.freshness import upsert_status
from catalogue.pool import pool_table
from catalogue.protection import RowEncoder, load_keyring, protected_fields
from catalogue.spec import DatasetSpec
from gateway.demo.catalogue import demo_catalogue
from gateway.demo.generate import DEFAULT_SEED, DemoGenerator, Size

BATCH_ROWS = 20_000  # rows per progress update, and per executemany on SQLite

Advance = Callable[[int], None]


async def load_demo(
    engine: AsyncEngine,
    size: str | Size = "small",
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    *,
    master_key: bytes,
) -> dict[str, int]:
    """Register the demo catalogue and load its rows; returns the number of rows each dataset
    holds afterwards (whether loaded now or found already loaded). L4 and sensitive columns
    are written encrypted under data keys wrapped by `master_key` (see catalogue.protection)."""
    departments, datasets = demo_catalogue()
    catalogue = await service.load_catalogue(engine)
    for dept in departments:
        if dept.code not in catalogue.departments:
            await service.save_department(engine, dept)
    for spec in datasets:
        if spec.code not in catalogue.datasets:
            await service.save_dataset(engine, spec)

    generator = DemoGenerator(size, seed)
    keyring = await load_keyring(engine, master_key, datasets)
    counts: dict[str, int] = {}
    with _progress_bar() if progress else nullcontext() as bar:
        for spec in datasets:
            cipher = keyring.cipher(spec.code) if protected_fields(spec) else None
            counts[spec.code] = await _load_dataset(engine, spec, generator, bar, RowEncoder(spec, cipher))
    return counts


async def _load_dataset(
    engine: AsyncEngine, spec: DatasetSpec, generator: DemoGenerator, bar: Any, encoder: RowEncoder
) -> int:
    table = pool_table(spec)
    columns = encoder.columns
    postgres = engine.dialect.name == "postgresql"
    async with engine.begin() as conn:
        if postgres:
            await _lock_postgres(conn, table)
        else:
            await _begin_immediate_sqlite(conn)
        existing = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        if existing:
            if bar is not None:
                bar.console.print(f"[dim]{spec.code}: {existing:,} rows already loaded, skipped[/dim]")
            return int(existing)
        task = _Task(bar, spec.code)
        task.note("preparing…")
        generator.prepare(spec.code)  # shared pools (people, enterprises): seconds at the large size
        task.start(total=generator.count(spec.code))
        rows = encoder.encode_all(generator.rows(spec.code))
        # Building an index once over sorted keys is several times faster than updating it
        # row by row (ID numbers arrive in random order), so load into a bare table.
        indexes = await _drop_secondary_indexes(conn, table)
        if postgres:
            loaded = await _copy_postgres(conn, table, columns, rows, task.advance)
        else:
            loaded = await _insert_sqlite(conn, table, columns, rows, task.advance)
        task.note("indexing…")
        for ddl in indexes:
            await conn.exec_driver_sql(ddl)
        # its size and freshness in the catalogue, as `shuqiao data load` records them
        now = datetime.now(UTC)
        await upsert_status(
            conn,
            spec.code,
            {"row_count": loaded, "last_load_at": now, "last_change_at": now, "last_load_mode": "append"},
        )
    task.done()
    return loaded


async def _drop_secondary_indexes(conn: AsyncConnection, table: Table) -> list[str]:
    """Drop the table's plain indexes (not those behind constraints); return their DDL.

    The definitions come from the database itself, so indexes added since the catalogue
    entry was created are restored too. Everything happens inside the dataset's transaction:
    on failure the indexes are back as they were."""
    if conn.dialect.name == "postgresql":
        rows = await conn.exec_driver_sql(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "WHERE i.schemaname = current_schema() AND i.tablename = $1 AND NOT EXISTS ("
            "  SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.schemaname) || '.' || "
            "  quote_ident(i.indexname))::regclass)",
            (table.name,),
        )
        await conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    else:
        # Indexes SQLite makes for constraints have no SQL text.
        rows = await conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (table.name,),
        )
    # SQLAlchemy types exec_driver_sql's result as one column per row (CursorResult[Any])
    indexes = [(name, ddl) for name, ddl in rows.all()]  # type: ignore[misc]
    quote = conn.dialect.identifier_preparer.quote
    for name, _ in indexes:
        await conn.exec_driver_sql(f"DROP INDEX {quote(name)}")
    return [ddl for _, ddl in indexes]


# ---- PostgreSQL ---------------------------------------------------------------------------


async def _lock_postgres(conn: AsyncConnection, table: Table) -> None:
    # Conflicts with itself (a second loader waits, then sees rows) but not with readers.
    quoted = conn.dialect.identifier_preparer.format_table(table)
    await conn.exec_driver_sql(f"LOCK TABLE {quoted} IN SHARE ROW EXCLUSIVE MODE")


async def _copy_postgres(
    conn: AsyncConnection, table: Table, columns: list[str], rows: Iterator[tuple[Any, ...]], advance: Advance
) -> int:
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None  # asyncpg's connection, open while SQLAlchemy's is
    # The LOCK above went through SQLAlchemy, which opened the transaction on this very
    # connection: COPY joins it and is rolled back with it.
    if not raw.is_in_transaction():
        raise RuntimeError("COPY must run inside the dataset's transaction")
    loaded = 0

    async def records() -> AsyncIterator[tuple[Any, ...]]:
        nonlocal loaded
        while batch := list(islice(rows, BATCH_ROWS)):
            for row in batch:
                yield row
            loaded += len(batch)
            advance(len(batch))

    # asyncpg encodes and sends as it iterates (with flow control), so memory stays flat.
    await raw.copy_records_to_table(table.name, records=records(), columns=columns)
    return loaded


# ---- SQLite -------------------------------------------------------------------------------


async def _begin_immediate_sqlite(conn: AsyncConnection) -> None:
    # Take the write lock before the emptiness check, so two loaders cannot both see an
    # empty table. The sqlite3 module then sees the open transaction and SQLAlchemy's
    # commit/rollback end it.
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None  # aiosqlite's connection, open while SQLAlchemy's is
    await raw.execute("BEGIN IMMEDIATE")


async def _insert_sqlite(
    conn: AsyncConnection, table: Table, columns: list[str], rows: Iterator[tuple[Any, ...]], advance: Advance
) -> int:
    dialect = conn.dialect
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None  # aiosqlite's connection, open while SQLAlchemy's is
    quote = dialect.identifier_preparer.quote
    # Only catalogue identifiers (validated snake_case, and quoted) go into the text; values are bound.
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    # SQLAlchemy's own conversions for this dialect (Decimal → float, date → ISO text…), so
    # rows read back through SQLAlchemy exactly as if SQLAlchemy had written them.
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    convert = [(i, p) for i, p in enumerate(processors) if p is not None]

    def prepare(batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        if not convert:
            return batch
        out = []
        for row in batch:
            values = list(row)
            for i, process in convert:
                if values[i] is not None:
                    values[i] = process(values[i])
            out.append(tuple(values))
        return out

    loaded = 0
    pending: asyncio.Future[Any] | None = None
    pending_size = 0
    try:
        while batch := list(islice(rows, BATCH_ROWS)):
            prepared = prepare(batch)  # generated while the previous batch is being written
            if pending is not None:
                await pending
                loaded += pending_size
                advance(pending_size)
            pending, pending_size = asyncio.ensure_future(raw.executemany(sql, prepared)), len(batch)
        if pending is not None:
            await pending
            loaded += pending_size
            advance(pending_size)
            pending = None
    finally:
        if pending is not None and not pending.done():
            # A generator error while a batch is in flight: let it finish before the rollback.
            await asyncio.gather(pending, return_exceptions=True)
    return loaded


# ---- progress -----------------------------------------------------------------------------


def _progress_bar() -> AbstractContextManager[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>14}"),
        TextColumn("{task.fields[note]}"),
    )


class _Task:
    """One dataset's line: rows/s measured from the first row to the rebuilt indexes."""

    def __init__(self, bar: Any, description: str) -> None:
        self.bar, self.loaded, self.started = bar, 0, time.perf_counter()
        self.id = bar.add_task(description, total=None, rate="", note="") if bar is not None else None

    def _rate(self) -> str:
        seconds = time.perf_counter() - self.started
        return f"{self.loaded / seconds:,.0f} rows/s" if seconds > 0 else ""

    def advance(self, n: int) -> None:
        self.loaded += n
        if self.bar is not None:
            self.bar.update(self.id, completed=self.loaded, rate=self._rate())

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.id, note=text)

    def start(self, total: int) -> None:
        self.started = time.perf_counter()
        if self.bar is not None:
            self.bar.update(self.id, total=total, note="")

    def done(self) -> None:
        if self.bar is not None:
            seconds = time.perf_counter() - self.started
            self.bar.update(self.id, completed=self.loaded, rate=self._rate(), note=f"{seconds:.1f}s")
