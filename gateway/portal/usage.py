"""Usage of the open tier per dataset and day, rolled up from the audit log (docs/portal.md
§Statistics).

The audit table may hold millions of events; the statistics pages never read it. `usage_daily`
holds one row per (dataset, day) with two counters, and `usage_rollup_cursor` the seq of the last
event counted. `roll_up_pending` counts the events after the cursor in chunks: each chunk is one
transaction that locks the cursor row first (two workers never count the same events), adds the
chunk's counts to the rows (an upsert that adds) and moves the cursor past the chunk. The counts
and the cursor commit together or not at all, so a crash, a restart or a second run never counts an
event twice or skips one; once caught up, another run changes nothing. Events are read only up to
the chain head, which the writer moves in the append's transaction, so no event below the cursor
can still be on its way. `UsageRollupTask` runs it every few seconds in the gateway; a fresh
database (cursor 0) rolls up the whole retained history in the background, chunk by chunk.

What is counted — only what the public may know, and no one's identity (the rows hold no
principal, address or consumer):
  call      an answer of the open tier (status < 400) that read the dataset: one per request and
            dataset (`reads` of the event), whoever asked — anonymous, the explorer's preview, an
            enterprise's API key; a refused request reads nothing and counts nothing
  download  a download that completed (`download.end`, status 200), one per request (a resumable
            download in `limit` pages counts each page)
Share-tier events are never read. Days are China Standard Time (UTC+8, no daylight saving)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Date, Index, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from gateway.audit.background import PeriodicTask
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent
from gateway.db import table_of

log = logging.getLogger("shuqiao.portal")

CST = timezone(timedelta(hours=8), "CST")
CHUNK = 2000  # events per transaction
OPEN_TIER = "open"
DOWNLOAD_DONE = "download.end"
DOWNLOAD_OPERATIONS = frozenset({"download", "download.start", "download.head", DOWNLOAD_DONE})


class UsageDaily(SQLModel, table=True):
    """Calls and completed downloads of one dataset on one day (CST), open tier only."""

    __tablename__ = "usage_daily"

    dataset: str = Field(primary_key=True)
    day: date = Field(sa_column=Column(Date, primary_key=True))
    calls: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    downloads: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))

    __table_args__ = (Index("ix_usage_daily_day", "day"),)


class UsageRollupCursor(SQLModel, table=True):
    """The seq of the last audit event counted into usage_daily."""

    __tablename__ = "usage_rollup_cursor"

    id: int = Field(default=HEAD_ID, primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


USAGE = table_of(UsageDaily)
CURSOR = table_of(UsageRollupCursor)
EVENTS = table_of(AuditEvent)
HEAD = table_of(AuditChainHead)

Key = tuple[str, date]  # (dataset, day)


@dataclass
class Counts:
    calls: int = 0
    downloads: int = 0


@dataclass
class Totals:
    """One dataset over a period."""

    calls: int = 0
    downloads: int = 0
    active_days: int = 0  # days with at least one call or download


def cst_day(moment: datetime) -> date:
    """The day in China of a stored time (SQLite hands back naive UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(CST).date()


def today_cst(now: datetime | None = None) -> date:
    return cst_day(now or datetime.now(UTC))


def _datasets_read(detail: str | None) -> set[str] | None:
    """The datasets an event's `reads` name; None if the detail is not what the writer wrote."""
    try:
        reads = orjson.loads(detail or "{}").get("reads") or []
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(reads, list):
        return None
    return {r["dataset"] for r in reads if isinstance(r, dict) and isinstance(r.get("dataset"), str)}


def tally(events: Iterable[Sequence[Any]]) -> dict[Key, Counts]:
    """The counts of open-tier events given as (occurred_at, operation_name, status, detail)."""
    out: dict[Key, Counts] = {}
    unreadable = 0
    for occurred_at, operation, status, detail in events:
        if status >= 400:
            continue
        download = operation == DOWNLOAD_DONE
        if not download and operation in DOWNLOAD_OPERATIONS:
            continue  # the start of a download, or a refused one: not a call
        if download and status != 200:
            continue  # aborted (499) or failed mid-stream
        datasets = _datasets_read(detail)
        if datasets is None:
            unreadable += 1
            continue
        day = cst_day(occurred_at)
        for dataset in datasets:
            counts = out.setdefault((dataset, day), Counts())
            if download:
                counts.downloads += 1
            else:
                counts.calls += 1
    if unreadable:
        log.warning(
            "%d audit events with an unreadable detail (edited?) left out of the usage counts", unreadable
        )
    return out


async def _lock_cursor(conn: AsyncConnection, sqlite: bool) -> int:
    if sqlite:
        # SQLite's write lock before reading (a deferred transaction could not upgrade later)
        await conn.execute(update(CURSOR).where(CURSOR.c.id == HEAD_ID).values(seq=CURSOR.c.seq))
    q = select(CURSOR.c.seq).where(CURSOR.c.id == HEAD_ID)
    seq = (await conn.execute(q if sqlite else q.with_for_update())).scalar()
    if seq is None:  # the migration seeds it; this covers tables made by metadata.create_all
        await conn.execute(CURSOR.insert().values(id=HEAD_ID, seq=0))
        return 0
    return int(seq)


async def _add(conn: AsyncConnection, sqlite: bool, counts: dict[Key, Counts]) -> None:
    rows = [
        {"dataset": dataset, "day": day, "calls": c.calls, "downloads": c.downloads}
        for (dataset, day), c in sorted(counts.items())
    ]
    ins = (sqlite_insert if sqlite else pg_insert)(USAGE)
    await conn.execute(
        ins.on_conflict_do_update(
            index_elements=[USAGE.c.dataset, USAGE.c.day],
            set_={
                "calls": USAGE.c.calls + ins.excluded.calls,
                "downloads": USAGE.c.downloads + ins.excluded.downloads,
            },
        ),
        rows,
    )


async def _roll_up_chunk(engine: AsyncEngine, chunk: int) -> int:
    """Count the next `chunk` events and move the cursor past them, in one transaction. Returns
    how many events (seqs) it covered: 0 when caught up."""
    sqlite = engine.dialect.name == "sqlite"
    async with engine.begin() as conn:
        after = await _lock_cursor(conn, sqlite)
        head = int((await conn.execute(select(HEAD.c.seq).where(HEAD.c.id == HEAD_ID))).scalar() or 0)
        upto = min(head, after + chunk)
        if upto <= after:
            return 0
        events = await conn.execute(
            select(EVENTS.c.occurred_at, EVENTS.c.operation_name, EVENTS.c.status, EVENTS.c.detail).where(
                EVENTS.c.seq > after,
                EVENTS.c.seq <= upto,
                EVENTS.c.tier == OPEN_TIER,
                EVENTS.c.status < 400,
            )
        )
        counts = tally(events)
        if counts:
            await _add(conn, sqlite, counts)
        await conn.execute(update(CURSOR).where(CURSOR.c.id == HEAD_ID).values(seq=upto))
    return upto - after


async def roll_up_pending(engine: AsyncEngine, chunk: int = CHUNK) -> int:
    """Count every event appended so far that is not counted yet; returns how many events."""
    total = 0
    while True:
        done = await _roll_up_chunk(engine, chunk)
        total += done
        if done < chunk:
            return total


async def rolled_up_through(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(CURSOR.c.seq).where(CURSOR.c.id == HEAD_ID))).scalar() or 0)


async def counted_through(engine: AsyncEngine) -> int:
    """Count what is pending, then say how far the rollup has counted: retention asks this
    before it prunes, so no event is pruned uncounted (and a prune never waits on the task)."""
    await roll_up_pending(engine)
    return await rolled_up_through(engine)


async def daily_usage(
    engine: AsyncEngine, since: date, until: date, dataset: str | None = None
) -> dict[Key, Counts]:
    """The rolled-up counts from `since` to `until` (inclusive), of one dataset or all."""
    q = select(USAGE.c.dataset, USAGE.c.day, USAGE.c.calls, USAGE.c.downloads).where(
        USAGE.c.day >= since, USAGE.c.day <= until
    )
    if dataset is not None:
        q = q.where(USAGE.c.dataset == dataset)
    async with engine.connect() as conn:
        rows = await conn.execute(q)
        return {(ds, _day(day)): Counts(int(calls), int(downloads)) for ds, day, calls, downloads in rows}


async def usage_by_dataset(engine: AsyncEngine, since: date, until: date) -> dict[str, Totals]:
    """Per dataset from `since` to `until`: one aggregate, one row per dataset used."""
    q = (
        select(
            USAGE.c.dataset,
            func.sum(USAGE.c.calls),
            func.sum(USAGE.c.downloads),
            func.sum(case((USAGE.c.calls + USAGE.c.downloads > 0, 1), else_=0)),
        )
        .where(USAGE.c.day >= since, USAGE.c.day <= until)
        .group_by(USAGE.c.dataset)
    )
    async with engine.connect() as conn:
        return {ds: Totals(int(c or 0), int(d or 0), int(a or 0)) for ds, c, d, a in await conn.execute(q)}


async def recent_use(engine: AsyncEngine, days: int, now: datetime | None = None) -> dict[str, int]:
    """Each dataset's calls plus downloads over the last `days` days (China time), for sorting by use."""
    until = today_cst(now)
    totals = await usage_by_dataset(engine, until - timedelta(days=days - 1), until)
    return {code: t.calls + t.downloads for code, t in totals.items()}


async def usage_by_day(
    engine: AsyncEngine, since: date, until: date, datasets: Collection[str]
) -> dict[date, Counts]:
    """Per day from `since` to `until`, summed over `datasets`: one aggregate, one row per day."""
    if not datasets:
        return {}
    q = (
        select(USAGE.c.day, func.sum(USAGE.c.calls), func.sum(USAGE.c.downloads))
        .where(USAGE.c.day >= since, USAGE.c.day <= until, USAGE.c.dataset.in_(sorted(datasets)))
        .group_by(USAGE.c.day)
    )
    async with engine.connect() as conn:
        return {_day(day): Counts(int(c or 0), int(d or 0)) for day, c, d in await conn.execute(q)}


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


class UsageRollupTask(PeriodicTask):
    """Rolls the usage counts up every `every` seconds."""

    name = "usage-rollup"

    def __init__(self, engine: AsyncEngine, every: float = 5.0) -> None:
        super().__init__(every)
        self.engine = engine

    async def step(self) -> None:
        await roll_up_pending(self.engine)
