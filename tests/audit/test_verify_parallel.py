"""`verify_chain` split between worker processes (PostgreSQL) reports what one walk reports: the
same first broken seq, reason and count, wherever the damage sits against the ranges' boundaries
(2, 3 and 4 workers over 40 events: boundaries after 20; 13, 26; 10, 20, 30). On SQLite `workers`
changes nothing (one walk). Also: the fast canonical bytes only ever cause a second look, and the
workers see the parent's snapshot, not events appended since."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import event_hash, verify_chain, verify_ranges
from gateway.audit import verify as verify_module
from gateway.audit.models import AuditEvent
from gateway.audit.verify import VerifyReport
from tests.audit import chain_helpers
from tests.audit.chain_helpers import run_with_engine as run
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__
N = 40
WORKERS = (2, 3, 4)


async def seed(engine: AsyncEngine) -> dict[int, dict[str, Any]]:
    await chain_helpers.append(engine, [make_event(i) for i in range(1, N + 1)])
    async with engine.connect() as conn:
        result = await conn.execute(select(EVENTS).order_by(EVENTS.c.seq))
        return {r["seq"]: dict(r) for r in result.mappings()}


async def every_split(engine: AsyncEngine) -> VerifyReport:
    """The one-walk report, after checking that every split into workers gives the same."""
    serial = await verify_chain(engine)
    for k in WORKERS:
        assert await verify_chain(engine, workers=k, min_range=1) == serial, k
    return serial


Tamper = Callable[[dict[int, dict[str, Any]]], list[Any]]


def edit(seq: int) -> Tamper:
    return lambda _: [update(EVENTS).where(EVENTS.c.seq == seq).values(principal_id="someone-else")]


def rehashed(seq: int) -> Tamper:
    """Rewritten with a recomputed hash: its successor's link breaks."""

    def go(stored: dict[int, dict[str, Any]]) -> list[Any]:
        forged = {**stored[seq], "principal_id": "someone-else"}
        forged["hash"] = event_hash(forged)
        return [update(EVENTS).where(EVENTS.c.seq == seq).values(forged)]

    return go


def deleted(*seqs: int) -> Tamper:
    return lambda _: [delete(EVENTS).where(EVENTS.c.seq.in_(seqs))]


def swapped(a: int, b: int) -> Tamper:
    def go(stored: dict[int, dict[str, Any]]) -> list[Any]:
        content = [c.name for c in EVENTS.c if c.name != "seq"]
        return [
            update(EVENTS).where(EVENTS.c.seq == x).values({c: stored[y][c] for c in content})
            for x, y in ((a, b), (b, a))
        ]

    return go


def appended(stored: dict[int, dict[str, Any]]) -> list[Any]:
    forged = {**stored[N], "seq": N + 1, "request_id": "forged", "prev_hash": stored[N]["hash"]}
    forged["hash"] = event_hash(forged)
    return [insert(EVENTS).values(forged)]


CASES: dict[str, tuple[Tamper, int, str]] = {
    # name: (tamper, first_bad_seq, a word of the reason)
    "edited first event": (edit(1), 1, "content"),
    "edited last of a range": (edit(20), 20, "content"),
    "edited first of a range": (edit(21), 21, "content"),
    "edited at 3-way boundary": (edit(14), 14, "content"),
    "edited last event": (edit(N), N, "content"),
    "rehashed last of a range": (rehashed(20), 21, "prev_hash"),
    "rehashed at 3-way boundary": (rehashed(13), 14, "prev_hash"),
    "rehashed last event": (rehashed(N), N, "chain head"),
    "gap: last of a range": (deleted(20), 20, "missing"),
    "gap: first of a range": (deleted(21), 21, "missing"),
    "gap: a whole range": (deleted(*range(11, 21)), 11, "missing"),
    "gap: two ranges": (deleted(*range(11, 31)), 11, "missing"),
    "swap across a boundary": (swapped(20, 21), 20, "content"),
    "swap across ranges": (swapped(5, 35), 5, "content"),
    "truncated tail": (deleted(38, 39, 40), 38, "tail"),
    "truncated last range": (deleted(*range(31, N + 1)), 31, "tail"),
    "extended tail": (appended, N + 1, "after the chain head"),
}


@pytest.mark.parametrize("case", CASES)
def test_any_split_reports_what_one_walk_reports(url: str, case: str) -> None:
    tamper, first_bad, word = CASES[case]

    async def go(engine: AsyncEngine) -> VerifyReport:
        stored = await seed(engine)
        async with engine.begin() as conn:
            for stmt in tamper(stored):
                await conn.execute(stmt)
        return await every_split(engine)

    report = run(url, go)
    assert (report.ok, report.first_bad_seq) == (False, first_bad), report
    assert word in (report.reason or ""), report


def test_an_intact_chain_verifies_in_any_split(url: str) -> None:
    async def go(engine: AsyncEngine) -> VerifyReport:
        await seed(engine)
        return await every_split(engine)

    assert run(url, go) == VerifyReport(ok=True, events_checked=N)


def test_the_fast_bytes_only_cause_a_second_look(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Canonical times written differently by PostgreSQL (no trailing Z): every event is hashed
    again by the writer's own function, and the chain still verifies, the edited event still
    fails."""
    if not url.startswith("postgresql"):
        pytest.skip("the fast path is PostgreSQL's")
    monkeypatch.setattr(verify_ranges, "RANGE_PAGE", verify_ranges.RANGE_PAGE.replace('"Z"', ""))

    async def go(engine: AsyncEngine) -> tuple[VerifyReport, VerifyReport]:
        await seed(engine)
        intact = await verify_chain(engine)
        async with engine.begin() as conn:
            await conn.execute(edit(33)({})[0])
        return intact, await verify_chain(engine)

    intact, edited = run(url, go)
    assert intact == VerifyReport(ok=True, events_checked=N)
    assert (edited.ok, edited.first_bad_seq, edited.events_checked) == (False, 33, 32)


def test_workers_see_the_parents_snapshot(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events appended after the check began (between the parent's snapshot and the workers'
    start) are not walked: without the shared snapshot they would show as events past the head."""
    if not url.startswith("postgresql"):
        pytest.skip("workers are PostgreSQL's")
    real = verify_module._run_workers

    async def append_first(jobs: list[dict[str, Any]]) -> list[verify_ranges.RangeResult]:
        engine = chain_helpers.create_engine(url)
        try:
            await chain_helpers.append(engine, [make_event(i) for i in range(N + 1, N + 6)])
        finally:
            await engine.dispose()
        return await real(jobs)

    async def go(engine: AsyncEngine) -> tuple[VerifyReport, VerifyReport]:
        await seed(engine)
        with monkeypatch.context() as mp:
            mp.setattr(verify_module, "_run_workers", append_first)
            during = await verify_chain(engine, workers=2, min_range=1)
        return during, await verify_chain(engine, workers=2, min_range=1)

    during, after = run(url, go)
    assert during == VerifyReport(ok=True, events_checked=N)
    assert after == VerifyReport(ok=True, events_checked=N + 5)


def test_without_hashlibs_sm3_the_walk_hashes_through_sm3_hex(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("the fast path is PostgreSQL's")
    monkeypatch.setattr(verify_ranges, "hashlib_hasher", lambda: None)

    async def go(engine: AsyncEngine) -> tuple[VerifyReport, VerifyReport]:
        await seed(engine)
        intact = await verify_chain(engine)
        async with engine.begin() as conn:
            await conn.execute(edit(7)({})[0])
        return intact, await verify_chain(engine)

    intact, edited = run(url, go)
    assert intact == VerifyReport(ok=True, events_checked=N)
    assert (edited.ok, edited.first_bad_seq) == (False, 7)
