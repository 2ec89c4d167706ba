"""audit_event's monthly partitions on PostgreSQL (migration 0027, gateway.audit.partitions): made
ahead, idempotent; appends land in their month, across a boundary too; events caught by the
default partition are moved home; retention by age drops whole months (and verify_retained still
holds), falling back to DELETE when it cannot have the table's lock; existing events keep their
chain through the migration. SQLite keeps one table, with the same key as the model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.checkpoints import write_checkpoint
from gateway.audit.models import AuditEvent
from gateway.audit.partitions import (
    AHEAD,
    DEFAULT,
    MonthPartition,
    attached,
    maintain,
    month_after,
    months_from,
)
from gateway.audit.retention import RetentionTask, archive_and_prune, verify_retained
from gateway.audit.verify import verify_chain
from keys.keystore import KeyStore
from tests.audit import chain_helpers
from tests.audit.chain_helpers import run_with_engine as run
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__


@pytest.fixture
def archives(tmp_path: Path) -> Path:
    return tmp_path / "var" / "audit-archive"


@pytest.fixture
def pg(db: str) -> Iterator[str]:
    """The empty chain on PostgreSQL, with only the partitions a fresh migration leaves (this
    month and AHEAD more, and the default): earlier tests' months are dropped."""
    if not db.startswith("postgresql"):
        pytest.skip("partitions are PostgreSQL's")

    async def tidy(engine: AsyncEngine) -> None:
        keep = {p.name for p in months_from(datetime.now(UTC), AHEAD)} | {DEFAULT}
        async with engine.begin() as conn:
            for name in await attached(conn):
                if name not in keep:
                    await conn.execute(text(f"DROP TABLE {name}"))
        await maintain(engine)

    run(db, tidy)
    yield db


def at(when: datetime, first: int, last: int, *, legacy_index: bool = False) -> Any:
    """Append events first..last occurring at `when` (the test appender's clock, patched);
    `legacy_index`: on a database before migration 0029."""

    async def go(engine: AsyncEngine) -> None:
        events = [make_event(i) for i in range(first, last + 1)]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(chain_helpers, "datetime", type("At", (), {"now": staticmethod(lambda tz=None: when)}))
            await chain_helpers.append(engine, events, legacy_index=legacy_index)

    return go


async def where(engine: AsyncEngine) -> dict[int, str]:
    """seq → the partition holding it."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT seq, tableoid::regclass::text FROM audit_event ORDER BY seq"))
        return {int(seq): str(name) for seq, name in rows.all()}


def month_start(now: datetime, plus: int) -> datetime:
    year, month = month_after(now.year, now.month, plus)
    return datetime(year, month, 1, tzinfo=UTC)


def test_the_key_is_seq_and_occurred_at_where_the_table_is_partitioned(db: str) -> None:
    """PostgreSQL's partitioned table needs the partition key in its key; SQLite's one table keeps
    the model's, seq. Checked here: alembic's autogenerate does not compare keys."""

    async def key(engine: AsyncEngine) -> list[str]:
        async with engine.connect() as conn:
            pk = await conn.run_sync(lambda c: inspect(c).get_pk_constraint("audit_event"))
        return list(pk["constrained_columns"])

    model = [c.name for c in EVENTS.primary_key.columns]
    if db.startswith("sqlite"):
        assert run(db, key) == model == ["seq"]
        report = run(db, maintain)
        assert report.to_json() == {"partitioned": False, "created": [], "moved": {}, "partitions": []}
    else:
        assert run(db, key) == [*model, "occurred_at"]


def test_partitions_are_made_ahead_and_maintenance_is_idempotent(pg: str) -> None:
    later = datetime(2031, 11, 15, tzinfo=UTC)

    async def go(engine: AsyncEngine) -> None:
        report = await maintain(engine, ahead=2, now=later)
        assert report.created == ["audit_event_y2031m11", "audit_event_y2031m12", "audit_event_y2032m01"]
        again = await maintain(engine, ahead=2, now=later)
        assert again.created == [] and again.moved == {}
        assert set(report.created) <= set(again.partitions) and DEFAULT in again.partitions
        async with engine.connect() as conn:
            bound = (
                await conn.execute(
                    text(
                        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class "
                        "WHERE relname = 'audit_event_y2031m12'"
                    )
                )
            ).scalar()
        assert bound == "FOR VALUES FROM ('2031-12-01 00:00:00+00') TO ('2032-01-01 00:00:00+00')"

    run(pg, go)


def test_the_writer_appends_across_a_month_boundary_into_each_month(pg: str, monkeypatch: Any) -> None:
    """The gateway's own writer (one jsonb statement a batch): the last microsecond of a month and
    the first of the next land in their own partitions, and the chain verifies."""
    from gateway.audit import store as store_module
    from gateway.audit.store import ChainedAuditLog

    boundary = month_start(datetime.now(UTC), 1)
    clock = [boundary - timedelta(microseconds=1)]
    monkeypatch.setattr(
        store_module, "datetime", type("At", (), {"now": staticmethod(lambda tz=None: clock[0])})
    )

    async def go(engine: AsyncEngine) -> None:
        sink = ChainedAuditLog(engine)
        await sink.record(make_event(1))
        clock[0] = boundary
        await sink.record(make_event(2))
        placed = await where(engine)
        last_month = months_from(boundary - timedelta(days=1), 0)[0].name
        assert placed == {1: last_month, 2: months_from(boundary, 0)[0].name}
        report = await verify_chain(engine)
        assert (report.ok, report.events_checked) == (True, 2), report

    run(pg, go)


def test_events_the_default_partition_caught_are_moved_into_their_month(pg: str) -> None:
    """A month with no partition (here 2034-05): its events go to the default partition, then
    maintenance makes the month and moves them; the chain is unchanged."""
    stray = datetime(2034, 5, 17, 8, 30, tzinfo=UTC)

    async def go(engine: AsyncEngine) -> None:
        await at(datetime.now(UTC), 1, 2)(engine)
        await at(stray, 3, 5)(engine)
        await at(datetime.now(UTC), 6, 6)(engine)
        assert [seq for seq, name in (await where(engine)).items() if name == DEFAULT] == [3, 4, 5]
        report = await maintain(engine)
        assert report.moved == {"audit_event_y2034m05": 3} and "audit_event_y2034m05" in report.created
        placed = await where(engine)
        assert [placed[s] for s in (3, 4, 5)] == ["audit_event_y2034m05"] * 3
        assert DEFAULT not in placed.values() and DEFAULT in report.partitions  # attached again, empty
        assert (await verify_chain(engine)).ok
        assert (await maintain(engine)).moved == {}

    run(pg, go)


def test_retention_by_age_drops_whole_months_and_verify_retained_holds(
    pg: str, store: KeyStore, archives: Path, monkeypatch: Any
) -> None:
    """Four months back, three back (with one late event appended after the next month's first),
    two back, now. A cutoff in the month two back: the two older months go whole — a checkpoint
    is made at the last seq of the newer one — and the one event of the month two back below it
    is deleted; later, a cutoff in last month takes the month two back whole. Each prune reads
    the prune anchor once, for the months and the plan both."""
    from gateway.audit import retention

    reads: list[int] = []
    real_anchor = retention.latest_anchor

    async def counted(conn: Any) -> Any:
        reads.append(1)
        return await real_anchor(conn)

    monkeypatch.setattr(retention, "latest_anchor", counted)
    now = datetime.now(UTC)
    m4, m3, m2 = (month_start(now, -k) for k in (4, 3, 2))
    names = [MonthPartition.of(m.year, m.month).name for m in (m4, m3, m2)]

    async def go(engine: AsyncEngine) -> None:
        await at(m4 + timedelta(days=9), 1, 4)(engine)
        await at(m3 + timedelta(days=9), 5, 8)(engine)
        await at(m2 + timedelta(seconds=5), 9, 9)(engine)
        await at(m2 - timedelta(seconds=1), 10, 10)(engine)  # late: the month three back, after seq 9
        await at(m2 + timedelta(days=9), 11, 14)(engine)
        await at(now, 15, 16)(engine)
        for seq in (8, 14, 16):
            await write_checkpoint(engine, store, seq)
        moved = await maintain(engine)  # the past months were in the default partition
        assert moved.moved == dict(zip(names, (4, 5, 5), strict=True))

        cutoff = m2 + timedelta(days=19)
        task = RetentionTask(engine, store, archives, days=(now - cutoff).days)
        first = await task.tick()
        assert first is not None and first.name == "audit-000000000001-000000000010.jsonl"
        assert len(reads) == 1
        async with engine.connect() as conn:
            left = set(await attached(conn))
            gone = [
                (await conn.execute(text("SELECT to_regclass(:n)"), {"n": n})).scalar() for n in names[:2]
            ]
            assert (await conn.execute(select(func.min(EVENTS.c.seq)))).scalar() == 11
        assert names[0] not in left and names[1] not in left and names[2] in left and gone == [None, None]
        assert await task.tick() is None  # nothing older is left but the cutoff's own month
        report = await verify_retained(engine, store, archives)
        assert (report.ok, report.events_checked) == (True, 16), report
        assert (await verify_chain(engine)).pruned_through == 10

        task.days = (now - (month_start(now, -1) + timedelta(days=3))).days  # a cutoff in last month
        reads.clear()
        second = await task.tick()
        assert second is not None and second.name == "audit-000000000011-000000000014.jsonl"
        assert len(reads) == 1
        async with engine.connect() as conn:
            assert names[2] not in await attached(conn)
        assert (await verify_retained(engine, store, archives)).ok

    run(pg, go)


def test_a_month_whose_lock_is_not_had_in_time_is_emptied_by_delete(
    pg: str, store: KeyStore, archives: Path, monkeypatch: Any
) -> None:
    """A long reader (a verify) holds the table: dropping would wait for it, and the writer's
    appends behind the drop; after the lock timeout the prune deletes the month's rows instead,
    and a later prune drops the empty month."""
    monkeypatch.setattr("gateway.audit.retention.LOCK_TIMEOUT", "100ms")
    now = datetime.now(UTC)
    m3 = month_start(now, -3)
    name = MonthPartition.of(m3.year, m3.month).name

    async def go(engine: AsyncEngine) -> None:
        await at(m3 + timedelta(days=2), 1, 3)(engine)
        await at(now, 4, 5)(engine)
        await write_checkpoint(engine, store, 5)
        await maintain(engine)
        task = RetentionTask(engine, store, archives, days=(now - month_start(now, -2)).days)
        async with engine.connect() as reader:
            await reader.execute(text("BEGIN ISOLATION LEVEL REPEATABLE READ"))
            await reader.execute(text("SELECT count(*) FROM audit_event"))  # holds ACCESS SHARE
            first = await task.tick()
            await reader.rollback()
        assert first is not None and first.name == "audit-000000000001-000000000003.jsonl"
        async with engine.connect() as conn:
            assert name in await attached(conn)
            assert (await conn.execute(text(f"SELECT count(*) FROM {name}"))).scalar() == 0
        assert (await verify_chain(engine)).ok
        await at(now, 6, 6)(engine)
        await write_checkpoint(engine, store, 6)
        assert await archive_and_prune(engine, store, archives, through_seq=4) is None  # no checkpoint at 4
        second = await archive_and_prune(engine, store, archives, through_seq=5)
        assert second is not None
        async with engine.connect() as conn:
            assert name not in await attached(conn)  # empty, and the pruned range has passed it
        assert (await verify_retained(engine, store, archives)).ok

    run(pg, go)


def test_the_migration_moves_existing_events_into_months_and_back(tmp_path: Path) -> None:
    """Events written before 0027 (two months) are in their month partitions after it, the chain
    verifies; down to 0025 they are one table again, still verifying."""
    from gateway.db import upgrade
    from tests.conftest import create_database

    url, drop = create_database("postgres", tmp_path)
    now = datetime.now(UTC)
    before = month_start(now, -1) + timedelta(days=3)
    try:
        upgrade(url, "0025")
        run(url, at(before, 1, 3, legacy_index=True))
        run(url, at(now, 4, 5, legacy_index=True))
        upgrade(url)

        async def check(engine: AsyncEngine) -> dict[int, str]:
            report = await verify_chain(engine)
            assert (report.ok, report.events_checked) == (True, 5), report
            return await where(engine)

        placed = run(url, check)
        assert placed == {
            **dict.fromkeys((1, 2, 3), months_from(before, 0)[0].name),
            **dict.fromkeys((4, 5), months_from(now, 0)[0].name),
        }
        from alembic import command

        from gateway.db import alembic_config

        command.downgrade(alembic_config(url), "0025")
        assert set(run(url, check).values()) == {"audit_event"}
        upgrade(url)
        assert run(url, check) == placed
    finally:
        drop()


def test_the_migration_on_an_empty_table_makes_this_month_and_three_ahead(pg: str) -> None:
    async def go(engine: AsyncEngine) -> list[str]:
        async with engine.connect() as conn:
            return await attached(conn)

    assert {p.name for p in months_from(datetime.now(UTC), AHEAD)} | {DEFAULT} <= set(run(pg, go))


def test_the_cli_makes_months_from_a_date_and_says_so(db: str, tmp_path: Path) -> None:
    """`shuqiao audit partitions --since` (e.g. before loading past events), with --json; on
    SQLite it says the table is not partitioned."""
    import json

    from typer.testing import CliRunner

    from gateway.audit.cli import audit_app

    env = {"SHUQIAO_DATABASE_URL": db, "SHUQIAO_VAR_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    if db.startswith("sqlite"):
        result = runner.invoke(audit_app, ["partitions"], env=env)
        assert result.exit_code == 0 and "not partitioned" in result.stdout, result.stdout
        return
    now = datetime.now(UTC)
    run(db, lambda engine: _drop_past_months(engine, now))
    since = month_start(now, -2)
    result = runner.invoke(audit_app, ["partitions", "--since", f"{since:%Y-%m-%d}", "--json"], env=env)
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    expected = [MonthPartition.of(m.year, m.month).name for m in (since, month_start(now, -1))]
    assert doc["partitioned"] is True and doc["created"] == expected and doc["moved"] == {}
    result = runner.invoke(audit_app, ["partitions"], env=env)
    assert result.exit_code == 0 and "created" not in result.stdout and expected[0] in result.stdout
    bad = runner.invoke(audit_app, ["partitions", "--since", "last spring"], env=env)
    assert bad.exit_code == 2


async def _drop_past_months(engine: AsyncEngine, now: datetime) -> None:
    async with engine.begin() as conn:
        for name in await attached(conn):
            month = MonthPartition.named(name)
            if month is not None and month.end <= month_start(now, 0):
                await conn.execute(text(f"DROP TABLE {name}"))
