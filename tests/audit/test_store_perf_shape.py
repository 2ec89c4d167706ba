"""The cheap append path keeps the chain exact: a sink whose cached head went stale (another sink
or process appended) redoes its batch under the lock, and events queued while the writer hands
its connection back are still written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from gateway.audit import ChainedAuditLog, verify_chain
from gateway.audit.models import AuditEvent
from gateway.db import create_engine, upgrade
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__


def test_two_sinks_taking_turns_make_one_exact_chain(url: str) -> None:
    async def go() -> tuple[int, Any, list[str]]:
        engine = create_engine(url)
        try:
            a, b = ChainedAuditLog(engine), ChainedAuditLog(engine)
            for i in range(10):  # each append by one sink makes the other's cached head stale
                await a.record(make_event(i, "a"))
                await b.record(make_event(i, "b"))
                await b.record(make_event(i, "bb"))
            async with engine.connect() as conn:
                count = (await conn.execute(select(func.count()).select_from(EVENTS))).scalar_one()
                ids = await conn.execute(select(EVENTS.c.request_id).order_by(EVENTS.c.seq))
                order = list(ids.scalars())
            return count, await verify_chain(engine), order
        finally:
            await engine.dispose()

    count, report, order = asyncio.run(go())
    assert count == 30 and report.ok and report.events_checked == 30, report
    assert order[:3] == ["a-0", "b-0", "bb-0"]  # queue order is chain order


def test_events_queued_while_the_writer_finishes_are_written(url: str) -> None:
    async def go() -> tuple[list[Any], Any]:
        engine = create_engine(url)
        try:
            log = ChainedAuditLog(engine)
            results: list[Any] = []
            for round_ in range(5):
                await log.record(make_event(round_, "first"))
                # queued right after a batch committed, while the writer may still be releasing
                results += await asyncio.gather(
                    *(log.record(make_event(i, f"r{round_}")) for i in range(8)), return_exceptions=True
                )
            return results, await verify_chain(engine)
        finally:
            await engine.dispose()

    results, report = asyncio.run(asyncio.wait_for(go(), 60))
    assert results == [None] * 40
    assert report.ok and report.events_checked == 45, report


def test_the_gateway_writer_keeps_one_connection_and_replaces_a_failed_or_idle_one(url: str) -> None:
    """hold_connection (the gateway's mode): one pool checkout for many bursts; a failed batch
    hands its connection back and the next batch takes a fresh one; so does a long-idle one;
    aclose() returns it. SQLite files use the writer's own sqlite3 connection, never the pool."""
    from sqlalchemy import event

    async def go() -> tuple[list[int], int]:
        engine = create_engine(url)
        checkouts = 0

        def counted(*_: Any) -> None:
            nonlocal checkouts
            checkouts += 1

        event.listen(engine.sync_engine.pool, "checkout", counted)
        log = ChainedAuditLog(engine, hold_connection=True)
        seen: list[int] = []
        try:
            for i in range(3):  # three bursts, one at a time
                await log.record(make_event(i))
            seen.append(checkouts)
            real = log._append

            async def broken(*_: Any) -> None:
                raise ConnectionError("server closed the connection")

            log._append = broken  # type: ignore[method-assign]
            try:
                await log.record(make_event(3))
            except ConnectionError:
                seen.append(-1)  # failed closed
            log._append = real  # type: ignore[method-assign]
            await log.record(make_event(4))
            seen.append(checkouts)
            log.IDLE_RECYCLE = 0.0
            await log.record(make_event(5))
            seen.append(checkouts)
            await log.aclose()
            return seen, engine.sync_engine.pool.checkedout()
        finally:
            await engine.dispose()

    seen, left = asyncio.run(go())
    if url.startswith("sqlite"):
        assert seen == [0, -1, 0, 0] and left == 0
    else:
        assert seen == [1, -1, 2, 3] and left == 0


def test_sqlite_batches_larger_than_one_insert_are_split_and_stay_one_chain(tmp_path: Path) -> None:
    """SQLite sends a batch as multi-row INSERTs bounded by the library's bound-parameter limit;
    a batch over that limit (here forced to 3 rows per INSERT) is written whole, in queue order.
    (PostgreSQL sends a batch as one JSON parameter, whatever its size.)"""
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)

    async def go() -> tuple[list[str], Any, int]:
        engine = create_engine(url)
        try:
            log = ChainedAuditLog(engine)
            await log.record(make_event(0, "first"))  # opens the writer's connection
            log._sqlite_file.rows_per_insert = 3  # type: ignore[union-attr]
            before = log.batches
            await asyncio.gather(*(log.record(make_event(i, "many")) for i in range(10)))
            async with engine.connect() as conn:
                ids = list((await conn.execute(select(EVENTS.c.request_id).order_by(EVENTS.c.seq))).scalars())
            return ids, await verify_chain(engine), log.batches - before
        finally:
            await engine.dispose()

    ids, report, batches = asyncio.run(go())
    assert report.ok and report.events_checked == 11, report
    assert ids == ["first-0", *(f"many-{i}" for i in range(10))]
    assert batches < 4  # so at least one batch held more rows than one INSERT takes
