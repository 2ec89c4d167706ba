"""Rows from an existing PostgreSQL table or view (`--from-sql`, `--from-table`, `data sync`).

The source is read through a server-side cursor in a thread of its own (its own event loop and
asyncpg connection, in a READ ONLY REPEATABLE READ transaction), handed over through a bounded
queue: constant memory, and the loader's own transaction is not involved.

A source URL never carries a password (it is stored in the catalogue and shown by `data
source`): asyncpg reads PGPASSWORD and ~/.pgpass like libpq does."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from gateway.loading.readers import LoadError

QUEUE_ROWS = 5_000
PREFETCH = 2_000
_DONE = object()


def check_source_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise LoadError("--source-url must be a postgresql:// URL")
    if parts.password:
        raise LoadError(
            "--source-url must not hold a password (it is stored and shown); use PGPASSWORD or ~/.pgpass"
        )
    return url


def quote_ident(name: str) -> str:
    """A table name as SQL: each dotted part double-quoted."""
    parts = name.split(".")
    if not all(p and p.replace("_", "").isalnum() for p in parts):
        raise LoadError(f"{name!r} is not a table name (letters, digits, _ and schema.table)")
    return ".".join('"' + p + '"' for p in parts)


def source_query(sql: str | None, table: str | None) -> str:
    if bool(sql) == bool(table):
        raise LoadError("give one of --from-sql or --from-table")
    if table:
        return f"SELECT * FROM {quote_ident(table)}"  # noqa: S608
    assert sql is not None
    return sql.strip().rstrip(";")


def since_query(base: str, updated_column: str) -> str:
    """Rows changed after the watermark ($1), oldest first."""
    col = quote_ident(updated_column)
    return (
        f"SELECT * FROM ({base}) AS src "  # noqa: S608
        f"WHERE $1::text IS NULL OR src.{col} > $1::text::{{type}} ORDER BY src.{col}"
    )


@dataclass
class SqlRows:
    """A query's rows, read in a thread; `header`, then `rows`, then `watermark` (the greatest
    value of `updated_column` seen, ISO text)."""

    url: str
    query: str
    args: tuple[Any, ...] = ()
    updated_column: str | None = None
    drop: set[str] = field(default_factory=set)
    incremental: bool = False  # only rows whose updated_column is after args[0] (None: all)
    header: list[str] = field(default_factory=list)
    watermark: str | None = None

    def __post_init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_ROWS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._produce()), daemon=True)
        self._thread.start()
        first = self._get()
        if isinstance(first, BaseException):
            self.close()
            raise LoadError(f"the source query failed: {first}") from None
        self.header = first

    def _get(self) -> Any:
        return self._queue.get()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    async def _produce(self) -> None:
        import asyncpg

        try:
            conn = await asyncpg.connect(self.url, timeout=10)
        except Exception as err:
            self._put(_safe_error(err))
            return
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                query = self.query
                if self.incremental:  # rows after the watermark ($1), compared as the column's type
                    probe = await conn.prepare(f"SELECT * FROM ({query}) AS src LIMIT 0")  # noqa: S608
                    col = next((a for a in probe.get_attributes() if a.name == self.updated_column), None)
                    if col is None:
                        raise LoadError(f"the source has no column {self.updated_column!r}")
                    query = since_query(query, col.name).replace("{type}", col.type.name)
                stmt = await conn.prepare(query)
                names = [a.name for a in stmt.get_attributes()]
                keep = [i for i, n in enumerate(names) if n not in self.drop]
                wm = names.index(self.updated_column) if self.updated_column in names else None
                if not self._put([names[i] for i in keep]):
                    return
                best: Any = None
                n = 0
                async for record in stmt.cursor(*self.args, prefetch=PREFETCH):
                    n += 1
                    if wm is not None and record[wm] is not None and (best is None or record[wm] > best):
                        best = record[wm]
                    if not self._put((n, [record[i] for i in keep])):
                        return
                if best is not None:
                    self.watermark = best.isoformat() if isinstance(best, datetime | date) else str(best)
                self._put(_DONE)
        except Exception as err:
            self._put(_safe_error(err))
        finally:
            await conn.close()

    @property
    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        while True:
            item = self._get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise LoadError(f"reading the source failed: {item}")
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _safe_error(err: Exception) -> Exception:
    """asyncpg's message names the server's complaint; never the URL (it holds the user)."""
    return (
        err
        if isinstance(err, LoadError)
        else Exception(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
    )
