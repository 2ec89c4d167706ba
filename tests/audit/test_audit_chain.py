"""The audit hash chain on SQLite and PostgreSQL: append, verify, tampering, concurrent writers.

PostgreSQL is required: if 127.0.0.1:5432 (or SHUQIAO_TEST_POSTGRES_URL) is unreachable these
tests fail, they do not skip."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update

from gateway.access_log import AccessEvent
from gateway.audit import ChainedAuditLog, VerifyReport, event_hash, verify_chain
from gateway.audit.chain import GENESIS_HASH, HASHED_COLUMNS
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent
from gateway.db import create_engine

EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__
N = 20


def make_event(i: int, worker: str = "w0") -> AccessEvent:
    return AccessEvent(
        request_id=f"{worker}-{i}",
        tier="share" if i % 2 else "open",
        principal_kind="client",
        principal_id=f"client-{i % 3}",
        consumer="D001" if i % 2 else None,
        client_address="10.0.0.7",
        operation_name=f"Op{i}",
        operation_type="query",
        query_digest=f"{i:064x}",
        status=200,
        error_codes=["FORBIDDEN_FIELD"] if i % 5 == 0 else [],
        latency_ms=1.23456 + i,
        fields=[{"dataset": "ds1", "field": "名称", "decision": "clear"}],
        reads=[{"dataset": "ds1", "rows": i}],
    )


async def append(url: str, n: int) -> None:
    engine = create_engine(url)
    try:
        log = ChainedAuditLog(engine)
        for i in range(1, n + 1):
            await log.record(make_event(i))
    finally:
        await engine.dispose()


async def tamper_and_verify(url: str, *statements: Any) -> VerifyReport:
    engine = create_engine(url)
    try:
        for stmt in statements:
            async with engine.begin() as conn:
                await conn.execute(stmt)
        return await verify_chain(engine)
    finally:
        await engine.dispose()


async def rows(url: str) -> dict[int, dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(select(EVENTS).order_by(EVENTS.c.seq))
            return {r["seq"]: dict(r) for r in result.mappings()}
    finally:
        await engine.dispose()


def seeded(url: str) -> dict[int, dict[str, Any]]:
    asyncio.run(append(url, N))
    return asyncio.run(rows(url))


def test_appends_n_events_and_the_chain_verifies(url: str) -> None:
    stored = seeded(url)
    assert sorted(stored) == list(range(1, N + 1))
    assert stored[1]["prev_hash"] == GENESIS_HASH
    for seq in range(2, N + 1):
        assert stored[seq]["prev_hash"] == stored[seq - 1]["hash"]
    assert stored[5]["error_codes"] == '["FORBIDDEN_FIELD"]'
    assert '"reads"' in stored[5]["detail"]
    report = asyncio.run(tamper_and_verify(url))
    assert report == VerifyReport(ok=True, events_checked=N)


def test_empty_chain_verifies(url: str) -> None:
    assert asyncio.run(tamper_and_verify(url)) == VerifyReport(ok=True, events_checked=0)


def _flipped(column: str, value: Any) -> Any:
    """The same value with one byte (or unit) changed."""
    if value is None:
        return ""
    if column in ("seq",):
        return value + 1000
    if column == "status":
        return value + 1
    if column == "latency_ms":
        return value + 0.001
    if column == "occurred_at":
        return value + timedelta(microseconds=1)
    return value[:-1] + ("0" if value[-1] != "0" else "1")


@pytest.mark.parametrize("seq", [1, 7, N])
def test_an_edited_byte_in_any_column_is_detected_at_that_seq(url: str, seq: int) -> None:
    stored = seeded(url)
    original = stored[seq]
    for column in (*HASHED_COLUMNS, "hash"):
        changed = _flipped(column, original[column])
        report = asyncio.run(
            tamper_and_verify(url, update(EVENTS).where(EVENTS.c.seq == seq).values({column: changed}))
        )
        assert not report.ok, column
        assert report.first_bad_seq == seq, (column, report)
        restore = update(EVENTS).where(EVENTS.c.seq == (changed if column == "seq" else seq))
        assert asyncio.run(tamper_and_verify(url, restore.values({column: original[column]}))).ok, column


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(url: str) -> None:
    stored = seeded(url)
    forged = {**stored[7], "principal_id": "someone-else"}
    forged["hash"] = event_hash(forged)
    report = asyncio.run(tamper_and_verify(url, update(EVENTS).where(EVENTS.c.seq == 7).values(forged)))
    assert (report.ok, report.first_bad_seq) == (False, 8)
    assert "prev_hash" in (report.reason or "")


def test_a_deleted_event_is_detected_at_its_seq(url: str) -> None:
    seeded(url)
    report = asyncio.run(tamper_and_verify(url, delete(EVENTS).where(EVENTS.c.seq == 9)))
    assert (report.ok, report.first_bad_seq, report.events_checked) == (False, 9, 8)
    assert "missing" in (report.reason or "")


def test_a_deleted_last_event_is_detected_against_the_head(url: str) -> None:
    seeded(url)
    report = asyncio.run(tamper_and_verify(url, delete(EVENTS).where(EVENTS.c.seq == N)))
    assert (report.ok, report.first_bad_seq) == (False, N)
    assert "tail" in (report.reason or "")


def test_an_inserted_event_is_detected(url: str) -> None:
    stored = seeded(url)
    # Make room at seq 5 by renumbering 5..N upwards (one row at a time: seq is unique), then
    # insert a well-formed forgery linked to seq 4. The first row that fails is the shifted one.
    shifts = [update(EVENTS).where(EVENTS.c.seq == s).values(seq=s + 1) for s in range(N, 4, -1)]
    forged = {**stored[5], "request_id": "forged", "prev_hash": stored[4]["hash"]}
    forged["hash"] = event_hash(forged)
    report = asyncio.run(tamper_and_verify(url, *shifts, insert(EVENTS).values(forged)))
    assert (report.ok, report.first_bad_seq) == (False, 6)


def test_an_event_appended_behind_the_writers_back_is_detected(url: str) -> None:
    stored = seeded(url)
    forged = {**stored[N], "seq": N + 1, "request_id": "forged", "prev_hash": stored[N]["hash"]}
    forged["hash"] = event_hash(forged)
    report = asyncio.run(tamper_and_verify(url, insert(EVENTS).values(forged)))
    assert (report.ok, report.first_bad_seq) == (False, N + 1)


def test_two_swapped_events_are_detected_at_the_first(url: str) -> None:
    stored = seeded(url)
    content = [c.name for c in EVENTS.c if c.name != "seq"]
    swap = [
        update(EVENTS).where(EVENTS.c.seq == a).values({c: stored[b][c] for c in content})
        for a, b in ((3, 11), (11, 3))
    ]
    report = asyncio.run(tamper_and_verify(url, *swap))
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_record_fails_closed_when_the_store_cannot_write(tmp_path: Path) -> None:
    async def go() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}")
        try:
            await ChainedAuditLog(engine).record(make_event(1))
        finally:
            await engine.dispose()

    with pytest.raises(Exception, match="audit_chain_head"):
        asyncio.run(go())


PER_WRITER = 40
WRITERS_PER_PROCESS = 2


def _worker(url: str, name: str, start: Any) -> None:
    async def go() -> None:
        engine = create_engine(url)
        try:
            # Two sinks per process, so appends contend on the database lock, not only the
            # per-instance asyncio lock.
            sinks = [ChainedAuditLog(engine) for _ in range(WRITERS_PER_PROCESS)]
            async with engine.connect():  # warm: open the pool's first connections before the start
                pass
            # Both processes start appending together (a barrier between them, after start-up
            # costs), otherwise on a loaded machine one can finish before the other begins.
            await asyncio.to_thread(start.wait, 60)

            async def run(k: int) -> None:
                for i in range(PER_WRITER):
                    await sinks[k].record(make_event(i, f"{name}.{k}"))
                    # Requests do not arrive back to back; without a gap SQLite's busy handler
                    # (not fair) may let one process take every batch before the other wakes.
                    await asyncio.sleep(0.002)

            await asyncio.gather(*(run(k) for k in range(WRITERS_PER_PROCESS)))
        finally:
            await engine.dispose()

    asyncio.run(go())


async def _count_and_verify(url: str) -> tuple[int, int, int, VerifyReport]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            count, low, high = (
                await conn.execute(select(func.count(), func.min(EVENTS.c.seq), func.max(EVENTS.c.seq)))
            ).one()
            head = (await conn.execute(select(HEAD.c.seq).where(HEAD.c.id == HEAD_ID))).scalar_one()
        assert head == high
        return count, low, high, await verify_chain(engine)
    finally:
        await engine.dispose()


def test_two_processes_appending_concurrently_make_one_unbroken_chain(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_worker, args=(url, f"p{i}", start)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    total = 2 * WRITERS_PER_PROCESS * PER_WRITER
    count, low, high, report = asyncio.run(_count_and_verify(url))
    assert (count, low, high) == (total, 1, total)
    assert report == VerifyReport(ok=True, events_checked=total)
    # Both processes really interleaved (otherwise the test proves little).
    stored = asyncio.run(rows(url))
    owners = [stored[s]["request_id"].split(".")[0] for s in range(1, total + 1)]
    switches = sum(a != b for a, b in itertools.pairwise(owners))
    assert switches > 1


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T04:40:00.123456+00:00",
        "2026-11-22T04:40:00",  # naive, as SQLite returns it: UTC
        "1999-01-02T03:04:05+08:00",  # another zone: converted
        "2026-01-01T00:00:00.000001+00:00",
    ],
)
def test_hashed_times_are_utc_with_microseconds_and_z(value: str) -> None:
    """The hashed text of `occurred_at` is fixed by the format (exported archives are verified
    offline against it): always microseconds, always UTC, always "Z"."""
    from datetime import UTC, datetime

    from gateway.audit.chain import canonical_time

    when = datetime.fromisoformat(value)
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    assert canonical_time(when) == aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert canonical_time(when).endswith("Z") and len(canonical_time(when)) == 27
