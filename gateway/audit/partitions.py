"""Monthly partitions of audit_event on PostgreSQL (migration 0027): made ahead, strays moved home.

audit_event is `PARTITION BY RANGE (occurred_at)`, one partition per UTC month, named
`audit_event_y2026m12` for [2026-12-01, 2027-01-01) UTC, plus `audit_event_default`, which takes
any event whose month has no partition, so an append never fails for want of one (the log is fail
closed: a failed append refuses the user's request). SQLite's table is not partitioned.

`maintain` (at start-up, every six hours, and `shuqiao audit partitions`):
  - rows in the default partition (a month with no partition yet, or an event late for a month
    retention has already dropped) are moved into a partition of their month: the default is
    detached, the month's partitions created, the rows moved (one DELETE … RETURNING into the
    parent, which routes them), the default attached again;
  - the partitions of this month and the next `ahead` months are made (`CREATE TABLE IF NOT
    EXISTS … PARTITION OF`), and the default partition if it is missing.
It does nothing, and takes no lock on the table, when all of that is already so. Otherwise it runs
in one transaction under an advisory lock (workers take turns) with a lock timeout: creating or
attaching a partition locks the parent table, and the writer's appends would queue behind a lock
request that itself waits on a long reader (a verify); after the timeout it gives up and is
retried next run — the default partition holds the events meanwhile.

Retention (gateway.audit.retention) reads `month_partitions` to drop whole months."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.background import PeriodicTask
from gateway.audit.models import AuditEvent

log = logging.getLogger("shuqiao.audit")

PARENT = AuditEvent.__tablename__
DEFAULT = f"{PARENT}_default"
AHEAD = 3  # months made ahead of the current one
LOCK_TIMEOUT = "2s"  # how long maintenance and retention wait for the parent table's lock
ADVISORY_KEY = 0x5348_5150  # "SHQP": one maintainer at a time
_NAME = re.compile(rf"^{PARENT}_y(\d{{4}})m(\d{{2}})$")


def month_after(year: int, month: int, plus: int = 1) -> tuple[int, int]:
    index = year * 12 + (month - 1) + plus
    return index // 12, index % 12 + 1


def partition_name(year: int, month: int) -> str:
    return f"{PARENT}_y{year:04d}m{month:02d}"


def is_partition(name: str) -> bool:
    """A partition of audit_event (by our naming): not a model table (alembic's include_name)."""
    return name == DEFAULT or _NAME.match(name) is not None


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name` hook: autogenerate compares the models with the tables, leaving
    out audit_event's partitions (made by migration 0027 and `maintain`, not by the models; the
    parent table, which the model describes, is compared as usual)."""
    return not (type_ == "table" and name is not None and is_partition(name))


@dataclass(frozen=True)
class MonthPartition:
    name: str
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC

    @classmethod
    def of(cls, year: int, month: int) -> MonthPartition:
        ny, nm = month_after(year, month)
        return cls(
            partition_name(year, month), datetime(year, month, 1, tzinfo=UTC), datetime(ny, nm, 1, tzinfo=UTC)
        )

    @classmethod
    def named(cls, name: str) -> MonthPartition | None:
        found = _NAME.match(name)
        return cls.of(int(found[1]), int(found[2])) if found else None

    def create_sql(self) -> str:
        # names and bounds are made here from integers, never from input
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} PARTITION OF {PARENT} "
            f"FOR VALUES FROM ('{self.start.isoformat()}') TO ('{self.end.isoformat()}')"
        )


def months_from(now: datetime, ahead: int, since: datetime | None = None) -> list[MonthPartition]:
    """The months of `now` and `ahead` more, from the month of `since` when given (earlier)."""
    now = now.astimezone(UTC)
    first = (since or now).astimezone(UTC)
    back = max(0, (now.year - first.year) * 12 + now.month - first.month)
    return [MonthPartition.of(*month_after(now.year, now.month, i)) for i in range(-back, ahead + 1)]


async def is_partitioned(conn: AsyncConnection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    q = text("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:t)")
    return (await conn.execute(q, {"t": PARENT})).first() is not None


async def attached(conn: AsyncConnection) -> list[str]:
    """The names of audit_event's partitions, as pg_inherits lists them."""
    q = text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(:t) ORDER BY c.relname"
    )
    return [str(r[0]) for r in (await conn.execute(q, {"t": PARENT})).all()]


async def month_partitions(conn: AsyncConnection) -> list[MonthPartition]:
    """The attached month partitions, oldest first (the default and any other name left out)."""
    found = [p for name in await attached(conn) if (p := MonthPartition.named(name)) is not None]
    return sorted(found, key=lambda p: p.start)


@dataclass
class MaintenanceReport:
    partitioned: bool
    created: list[str] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)  # rows moved out of the default, by partition
    partitions: list[str] = field(default_factory=list)  # attached after the run, default included

    def to_json(self) -> dict[str, Any]:
        return {
            "partitioned": self.partitioned,
            "created": self.created,
            "moved": self.moved,
            "partitions": self.partitions,
        }


async def maintain(
    engine: AsyncEngine, *, ahead: int = AHEAD, now: datetime | None = None, since: datetime | None = None
) -> MaintenanceReport:
    """Move the default partition's rows into their months and make the partitions of this month
    and `ahead` more (see the module docstring), and of every month from `since` when given (for
    loading events of past months: made first, they need no moving). On SQLite: nothing,
    `partitioned` false."""
    if engine.dialect.name != "postgresql":
        return MaintenanceReport(False)
    wanted = months_from(now or datetime.now(UTC), ahead, since)
    async with engine.connect() as conn:
        if not await is_partitioned(conn):
            return MaintenanceReport(False)
        names = set(await attached(conn))
        strays = await _stray_months(conn) if DEFAULT in names else []
        await conn.rollback()
    if not strays and DEFAULT in names and all(p.name in names for p in wanted):
        return MaintenanceReport(True, partitions=sorted(names))
    report = MaintenanceReport(True)
    async with engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_KEY})
        names = set(await attached(conn))  # another worker may have done it meanwhile
        if DEFAULT in names and (strays := await _stray_months(conn)):
            await _move_strays(conn, strays, names, report)
        for month in wanted:
            if month.name not in names:
                await conn.execute(text(month.create_sql()))
                report.created.append(month.name)
        if DEFAULT not in names:
            await conn.execute(text(f"CREATE TABLE IF NOT EXISTS {DEFAULT} PARTITION OF {PARENT} DEFAULT"))
            report.created.append(DEFAULT)
        report.partitions = await attached(conn)
    if report.created or report.moved:
        log.info("audit partitions: created %s, moved from the default %s", report.created, report.moved)
    return report


async def _stray_months(conn: AsyncConnection) -> list[MonthPartition]:
    q = text(f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') FROM {DEFAULT}")  # noqa: S608
    months = [MonthPartition.of(r[0].year, r[0].month) for r in (await conn.execute(q)).all()]
    return sorted(months, key=lambda p: p.start)


async def _move_strays(
    conn: AsyncConnection, strays: Sequence[MonthPartition], names: set[str], report: MaintenanceReport
) -> None:
    """Detach the default, make each stray month's partition, move its rows there, attach the
    default again (which checks it holds no row another partition should)."""
    await conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {DEFAULT}"))
    for month in strays:
        if month.name not in names:
            await conn.execute(text(month.create_sql()))
            names.add(month.name)
            report.created.append(month.name)
        moved = await conn.execute(
            text(
                f"WITH moved AS (DELETE FROM {DEFAULT} WHERE occurred_at >= :start AND occurred_at < :end "  # noqa: S608
                f"RETURNING *) INSERT INTO {PARENT} SELECT * FROM moved"
            ),
            {"start": month.start, "end": month.end},
        )
        report.moved[month.name] = int(moved.rowcount or 0)
    await conn.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {DEFAULT} DEFAULT"))


class PartitionTask(PeriodicTask):
    """Runs `maintain` shortly after start, then every `every` seconds (six hours)."""

    name = "audit-partitions"

    def __init__(self, engine: AsyncEngine, every: float = 6 * 3600.0, first_after: float = 1.0) -> None:
        super().__init__(every, first_after)
        self.engine = engine

    async def step(self) -> None:
        await maintain(self.engine)
