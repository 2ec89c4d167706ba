"""Freshness, size and source of each dataset: what the last load or sync did, and where a
sync reads from.

A table of its own beside `dataset` (one row per dataset code), not columns of `dataset`:
a load changes these on every run and must not bump the catalogue version (that rebuilds
every worker's schemas), and the catalogue file (`catalog apply`) owns `dataset`'s columns.

A source URL never holds a password: libpq's own places (PGPASSWORD, ~/.pgpass, which asyncpg
reads) keep it out of the database and out of every listing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, DateTime, false, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalogue.spec import DatasetSpec


class DatasetStatus(SQLModel, table=True):
    __tablename__ = "dataset_status"

    dataset_code: str = Field(primary_key=True, max_length=64)
    row_count: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    last_load_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    last_change_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    last_load_digest: str | None = Field(default=None, max_length=80)  # "sm3:<hex>" of the file loaded
    last_load_mode: str | None = Field(default=None, max_length=16)
    last_sync_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    last_sync_outcome: str | None = Field(default=None)
    # Incremental sync: the greatest updated-at value copied so far (ISO text), and the source.
    sync_watermark: str | None = Field(default=None, max_length=64)
    source_url: str | None = Field(default=None)
    source_sql: str | None = Field(default=None)
    source_table: str | None = Field(default=None, max_length=200)
    source_updated_column: str | None = Field(default=None, max_length=64)
    source_key: str | None = Field(default=None, max_length=200)  # comma-separated key columns
    # The source holds every row, every time (a full snapshot): a row gone from it is deleted
    # here on the next sync. An incremental source (the default) never deletes.
    source_snapshot: bool = Field(
        default=False, sa_column=Column(Boolean(), nullable=False, server_default=false())
    )


FRESHNESS_FIELDS = (
    "row_count",
    "last_load_at",
    "last_change_at",
    "last_load_digest",
    "last_sync_at",
    "last_sync_outcome",
)


def describe(row: DatasetStatus | None) -> dict[str, Any]:
    """The freshness of one dataset as plain JSON values (None where never loaded)."""
    out: dict[str, Any] = {}
    for name in FRESHNESS_FIELDS:
        value = getattr(row, name) if row is not None else None
        if isinstance(value, datetime):
            # SQLite hands back the naive UTC it stored
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        out[name] = value
    return out


def listing(spec: DatasetSpec, status: DatasetStatus | None) -> dict[str, Any]:
    """One dataset as `shuqiao catalog list --json` and `GET /admin/data/datasets` show it: its entry,
    the columns a file loads into, its size and freshness."""
    return {
        "code": spec.code,
        "resource_code": spec.resource_code,
        "name": spec.name,
        "department": spec.department,
        "share": spec.share.value,
        "open": spec.open.value,
        "published": spec.published,
        "fields": len(spec.fields),
        "columns": [f.name for f in spec.fields],
        "entity_key": spec.entity_field,
        **describe(status),
    }


async def load_statuses(engine: AsyncEngine) -> dict[str, DatasetStatus]:
    async with AsyncSession(engine) as session:
        return {r.dataset_code: r for r in (await session.exec(select(DatasetStatus))).all()}


async def upsert_status(conn: AsyncConnection, dataset: str, values: dict[str, Any]) -> None:
    """Set some of a dataset's freshness columns, in the caller's transaction."""
    table = DatasetStatus.__table__  # type: ignore[attr-defined]
    done = await conn.execute(update(table).where(table.c.dataset_code == dataset).values(**values))
    if done.rowcount == 0:
        await conn.execute(insert(table).values(dataset_code=dataset, **values))
