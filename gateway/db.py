"""Database engines and migrations: SQLite embedded by default, PostgreSQL in production."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import cast, overload

from sqlalchemy import Table, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Core table, for statements written against its columns (`.c`). SQLModel sets
    `__table__` when it makes the class but its stubs do not declare it."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


@overload
def utc_aware(dt: datetime) -> datetime: ...
@overload
def utc_aware(dt: datetime | None) -> datetime | None: ...
def utc_aware(dt: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime: SQLite gives back the naive UTC value it was given."""
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


DEFAULT_POOL_SIZE = 10
DEFAULT_POOL_TIMEOUT = 10.0


def create_engine(
    url: str, *, pool_size: int = DEFAULT_POOL_SIZE, pool_timeout: float = DEFAULT_POOL_TIMEOUT
) -> AsyncEngine:
    """A fixed pool of `pool_size` connections, no overflow: under load a request waits for a
    connection (up to `pool_timeout` seconds, then SQLAlchemy's TimeoutError, which the gateway
    answers as 503 SERVICE_BUSY) instead of opening one that is closed again on return.
    Overflow connections were opened and closed for most requests at 32 concurrent clients (437
    PostgreSQL sessions in 14 s, each a backend fork and a handshake; on SQLite each a thread, a
    file open and a schema parse), which cost more than the requests' own queries. On PostgreSQL
    the audit writer keeps one of these connections between bursts (SQLite's has its own)."""
    pool: dict[str, float] = {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": pool_timeout}
    if is_sqlite(url):
        path = make_url(url).database
        if not path or path == ":memory:":
            pool = {}  # SQLAlchemy's default, one shared connection: a memory database is per connection
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets readers run while the audit writer commits.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_pre_ping=False, **pool)


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Apply migrations (sync entry point for the CLI and test fixtures). "heads": feature
    branches of the migration graph may run side by side until a merge revision joins them."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "heads") -> None:
    await asyncio.to_thread(upgrade, url, revision)


async def pool_fits(engine: AsyncEngine, pool_size: int, workers: int) -> str | None:
    """On PostgreSQL: a warning if `workers` processes with `pool_size` connections each cannot
    all connect (more than max_connections minus the superuser reserve); None if they fit, on
    SQLite, or if the server does not say. Too many shows up only under load, as refused
    connections, so it is said at start-up."""
    if engine.dialect.name != "postgresql":
        return None
    try:
        async with engine.connect() as conn:
            limit = int((await conn.exec_driver_sql("SHOW max_connections")).scalar_one())
            reserved = int((await conn.exec_driver_sql("SHOW superuser_reserved_connections")).scalar_one())
    except Exception:  # a start-up check must not stop the start
        return None
    wanted, usable = pool_size * workers, limit - reserved
    if wanted <= usable:
        return None
    return (
        f"SHUQIAO_DB_POOL_SIZE={pool_size} x {workers} worker(s) = {wanted} connections, but "
        f"PostgreSQL accepts {usable} (max_connections {limit} - {reserved} reserved): "
        "lower the pool size or raise max_connections"
    )
