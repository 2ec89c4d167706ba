"""Prune anchors on SQLite and PostgreSQL: after `archive_and_prune`, `verify_chain` and
`verify_with_checkpoints` start after the anchor (pruned_through) and still catch every tamper case
after it, a tampered or deleted anchor, and events left at or below it; retention by age prunes only
old sealed events, never past a checkpoint; two concurrent prunes make one archive and one anchor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import event_hash, verify_chain
from gateway.audit.checkpoints import ANCHORS, CHECKPOINTS, verify_with_checkpoints, write_checkpoint
from gateway.audit.models import AuditEvent
from gateway.audit.retention import RetentionError, RetentionTask, archive_and_prune, verify_retained
from gateway.db import create_engine
from keys.keystore import KeyStore
from keys.sm3 import sm3
from tests.audit import chain_helpers
from tests.audit.chain_helpers import run_with_engine as run
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__
K, N = 10, 15  # pruned through K, events K+1..N remain


@pytest.fixture
def archives(tmp_path: Path) -> Path:
    return tmp_path / "var" / "audit-archive"


async def append(engine: AsyncEngine, first: int, last: int, at: datetime | None = None) -> None:
    """Events first..last, all occurring at `at` (default now)."""
    events = [make_event(i) for i in range(first, last + 1)]
    if at is None:
        await chain_helpers.append(engine, events)
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chain_helpers, "datetime", type("At", (), {"now": staticmethod(lambda tz=None: at)}))
        await chain_helpers.append(engine, events)


async def pruned_chain(engine: AsyncEngine, store: KeyStore, archives: Path) -> Path:
    """Events 1..N, checkpoint at K, pruned through K."""
    await append(engine, 1, K)
    await write_checkpoint(engine, store)
    await append(engine, K + 1, N)
    path = await archive_and_prune(engine, store, archives)
    assert path is not None
    return path


async def rows(engine: AsyncEngine) -> dict[int, dict[str, Any]]:
    async with engine.connect() as conn:
        return {r["seq"]: dict(r) for r in (await conn.execute(select(EVENTS))).mappings()}


async def anchors(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        q = select(ANCHORS).order_by(ANCHORS.c.through_seq)
        return [dict(r) for r in (await conn.execute(q)).mappings()]


def test_verify_after_a_prune_starts_after_the_anchor(db: str, store: KeyStore, archives: Path) -> None:
    async def go(engine: AsyncEngine) -> None:
        path = await pruned_chain(engine, store, archives)
        report = await verify_chain(engine)
        assert (report.ok, report.events_checked, report.pruned_through) == (True, N - K, K), report
        assert report.to_json()["pruned_through"] == K
        full = await verify_with_checkpoints(engine, store)
        assert (full.ok, full.events_checked, full.checkpoints_checked, full.pruned_through) == (
            True,
            N - K,
            1,
            K,
        ), full
        [anchor] = await anchors(engine)
        async with engine.connect() as conn:
            signed = (await conn.execute(select(CHECKPOINTS.c.hash).where(CHECKPOINTS.c.seq == K))).scalar()
        assert (anchor["through_seq"], anchor["from_seq"], anchor["archive"]) == (K, 1, path.name)
        assert anchor["hash"] == signed and anchor["archive_sm3"] == sm3(path.read_bytes()).hex()

        # a second prune continues from the anchor; its archive links to it (header prev_hash)
        await write_checkpoint(engine, store, 13)
        second = await archive_and_prune(engine, store, archives)
        assert second is not None and second.name == "audit-000000000011-000000000013.jsonl"
        assert json.loads(second.read_bytes().split(b"\n", 1)[0])["prev_hash"] == anchor["hash"]
        assert [a["through_seq"] for a in await anchors(engine)] == [K, 13]  # history kept
        report = await verify_chain(engine)
        assert (report.ok, report.events_checked, report.pruned_through) == (True, 2, 13), report
        retained = await verify_retained(engine, store, archives)
        assert (retained.ok, retained.events_checked, retained.checkpoints_checked) == (True, N, 2), retained
        # everything pruned: the head is the anchor
        await write_checkpoint(engine, store)
        assert await archive_and_prune(engine, store, archives) is not None
        report = await verify_chain(engine)
        assert (report.ok, report.events_checked, report.pruned_through) == (True, 0, N), report
        await append(engine, N + 1, N + 1)
        assert (await verify_chain(engine)).ok and (await verify_with_checkpoints(engine, store)).ok

    run(db, go)


def test_cli_verify_names_the_pruned_range(db: str, store: KeyStore, archives: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.audit.cli import audit_app

    run(db, lambda engine: pruned_chain(engine, store, archives))
    env = {"SHUQIAO_DATABASE_URL": db, "SHUQIAO_VAR_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    result = runner.invoke(audit_app, ["verify"], env=env)
    assert result.exit_code == 0, result.stdout
    assert f"audit chain verified: events {K + 1}..{N} (1..{K} pruned and archived)" in result.stdout
    result = runner.invoke(audit_app, ["verify", "--json"], env=env)
    doc = json.loads(result.stdout)
    assert {k: doc[k] for k in ("ok", "events_checked", "first_bad_seq", "reason", "pruned_through")} == {
        "ok": True,
        "events_checked": N - K,
        "first_bad_seq": None,
        "reason": None,
        "pruned_through": K,
    }
    # and, since the archives are there, the whole history (tests/audit/test_history.py)
    assert [(s["kind"], s["from_seq"], s["to_seq"]) for s in doc["segments"]] == [
        ("archived", 1, K),
        ("live", K + 1, N),
    ]
    result = runner.invoke(audit_app, ["verify-checkpoints"], env=env)
    assert result.exit_code == 0 and f"(1..{K} pruned and archived)" in result.stdout, result.stdout
    result = runner.invoke(audit_app, ["verify-retained"], env=env)
    assert result.exit_code == 0 and f"{N} events" in result.stdout, result.stdout


def _flip(value: str) -> str:
    return value[:-1] + ("0" if value[-1] != "0" else "1")


def _edit(seq: int, column: str) -> Callable[[dict[int, dict[str, Any]]], list[Any]]:
    return lambda s: [update(EVENTS).where(EVENTS.c.seq == seq).values({column: _flip(str(s[seq][column]))})]


def _forge(seq: int) -> Callable[[dict[int, dict[str, Any]]], list[Any]]:
    def make(s: dict[int, dict[str, Any]]) -> list[Any]:
        forged = {**s[seq], "principal_id": "someone-else"}
        forged["hash"] = event_hash(forged)
        return [update(EVENTS).where(EVENTS.c.seq == seq).values(forged)]

    return make


def _relink_first(s: dict[int, dict[str, Any]]) -> list[Any]:
    """The first remaining event rewritten to link elsewhere, its own hash recomputed."""
    forged = {**s[K + 1], "prev_hash": "0" * 64}
    forged["hash"] = event_hash(forged)
    return [update(EVENTS).where(EVENTS.c.seq == K + 1).values(forged)]


def _swap(a: int, b: int) -> Callable[[dict[int, dict[str, Any]]], list[Any]]:
    def make(s: dict[int, dict[str, Any]]) -> list[Any]:
        content = [c.name for c in EVENTS.c if c.name != "seq"]
        return [
            update(EVENTS).where(EVENTS.c.seq == x).values({c: s[y][c] for c in content})
            for x, y in ((a, b), (b, a))
        ]

    return make


def _append_behind(s: dict[int, dict[str, Any]]) -> list[Any]:
    forged = {**s[N], "seq": N + 1, "request_id": "forged", "prev_hash": s[N]["hash"]}
    forged["hash"] = event_hash(forged)
    return [insert(EVENTS).values(forged)]


TAMPER = {
    "edited byte, first remaining": (_edit(K + 1, "principal_id"), K + 1),
    "edited byte": (_edit(13, "detail"), 13),
    "edited hash": (_edit(12, "hash"), 12),
    "edited prev_hash of the first remaining": (_edit(K + 1, "prev_hash"), K + 1),
    "relinked first remaining, hash recomputed": (_relink_first, K + 1),
    "recomputed hash breaks the next link": (_forge(12), 13),
    "deleted first remaining": (lambda s: [delete(EVENTS).where(EVENTS.c.seq == K + 1)], K + 1),
    "deleted event": (lambda s: [delete(EVENTS).where(EVENTS.c.seq == 13)], 13),
    "deleted last event": (lambda s: [delete(EVENTS).where(EVENTS.c.seq == N)], N),
    "swapped events": (_swap(12, 14), 12),
    "appended behind the writer": (_append_behind, N + 1),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_each_tamper_case_after_a_prune_is_detected_at_its_seq(
    db: str, store: KeyStore, archives: Path, case: str
) -> None:
    tamper, bad_seq = TAMPER[case]

    async def go(engine: AsyncEngine) -> None:
        await pruned_chain(engine, store, archives)
        statements = tamper(await rows(engine))
        async with engine.begin() as conn:
            for stmt in statements:
                await conn.execute(stmt)
        report = await verify_chain(engine)
        assert (report.ok, report.first_bad_seq, report.pruned_through) == (False, bad_seq, K), report
        full = await verify_with_checkpoints(engine, store)
        assert not full.ok, full

    run(db, go)


ANCHOR_TAMPER = {
    "anchor hash edited": (lambda: [update(ANCHORS).values(hash="0" * 64)], K, "differs from the signed"),
    "anchor moved to a seq without a checkpoint": (
        lambda: [update(ANCHORS).values(through_seq=K - 1)],
        K - 1,
        "no signed checkpoint",
    ),
    # verify-retained still spans the whole history here (archive, its checkpoint, the chain), as
    # for a prune from before anchors; the chain check alone reports the rows as missing
    "anchor deleted": (lambda: [delete(ANCHORS)], 1, "missing event: expected seq 1"),
    "anchored checkpoint deleted": (lambda: [delete(CHECKPOINTS)], K, "no signed checkpoint"),
}


@pytest.mark.parametrize("case", list(ANCHOR_TAMPER))
def test_a_tampered_anchor_is_detected(db: str, store: KeyStore, archives: Path, case: str) -> None:
    tamper, bad_seq, reason = ANCHOR_TAMPER[case]

    async def go(engine: AsyncEngine) -> None:
        await pruned_chain(engine, store, archives)
        async with engine.begin() as conn:
            for stmt in tamper():
                await conn.execute(stmt)
        report = await verify_chain(engine)
        assert (report.ok, report.first_bad_seq) == (False, bad_seq), report
        assert reason in (report.reason or ""), report
        assert not (await verify_with_checkpoints(engine, store)).ok
        if case != "anchor deleted":
            assert not (await verify_retained(engine, store, archives)).ok

    run(db, go)


def test_anchor_and_checkpoint_rewritten_together_are_caught(
    db: str, store: KeyStore, archives: Path
) -> None:
    async def go(engine: AsyncEngine) -> None:
        await pruned_chain(engine, store, archives)
        async with engine.begin() as conn:
            await conn.execute(update(ANCHORS).values(hash="1" * 64))
            await conn.execute(update(CHECKPOINTS).where(CHECKPOINTS.c.seq == K).values(hash="1" * 64))
        report = await verify_chain(engine)  # unkeyed: the link from K+1 breaks
        assert (report.ok, report.first_bad_seq) == (False, K + 1), report
        full = await verify_with_checkpoints(engine, store)  # keyed: the signature no longer holds
        assert (full.ok, full.first_bad_seq) == (False, K), full
        assert "signature" in (full.reason or "")

    run(db, go)


def test_events_left_at_or_below_the_anchor_are_detected(db: str, store: KeyStore, archives: Path) -> None:
    async def go(engine: AsyncEngine) -> None:
        await append(engine, 1, K)
        five = (await rows(engine))[5]  # a copy, put back after the prune
        await write_checkpoint(engine, store)
        await append(engine, K + 1, N)
        assert await archive_and_prune(engine, store, archives) is not None
        async with engine.begin() as conn:
            await conn.execute(insert(EVENTS).values(five))
        report = await verify_chain(engine)
        assert (report.ok, report.first_bad_seq) == (False, 5), report
        assert "remains in the range pruned" in (report.reason or "")
        assert not (await verify_with_checkpoints(engine, store)).ok
        await write_checkpoint(engine, store)
        with pytest.raises(RetentionError, match="below the prune anchor"):
            await archive_and_prune(engine, store, archives)  # would erase the evidence
        assert len(await anchors(engine)) == 1

    run(db, go)


def test_verify_retained_checks_each_archive_against_its_anchor(
    db: str, store: KeyStore, archives: Path
) -> None:
    async def go(engine: AsyncEngine) -> None:
        path = await pruned_chain(engine, store, archives)
        assert (await verify_retained(engine, store, archives)).ok
        async with engine.begin() as conn:
            await conn.execute(update(ANCHORS).values(archive_sm3="0" * 64))
        report = await verify_retained(engine, store, archives)
        assert (report.ok, report.first_bad_seq) == (False, K) and "SM3" in (report.reason or ""), report
        async with engine.begin() as conn:
            await conn.execute(update(ANCHORS).values(archive_sm3=sm3(path.read_bytes()).hex()))
        assert (await verify_retained(engine, store, archives)).ok
        # an anchored archive that is gone is named
        path.rename(path.with_suffix(".bak"))
        report = await verify_retained(engine, store, archives)
        assert not report.ok and "missing" in (report.reason or ""), report

    run(db, go)


DAY = timedelta(days=1)


def test_retention_by_age_prunes_only_old_sealed_events(
    db: str, store: KeyStore, archives: Path, tmp_path: Path
) -> None:
    now = datetime.now(UTC)

    async def go(engine: AsyncEngine) -> None:
        await append(engine, 1, 4, now - 40 * DAY)
        await write_checkpoint(engine, store, 4)
        await append(engine, 5, 8, now - 40 * DAY)
        await write_checkpoint(engine, store, 8)
        await append(engine, 9, 10, now - 40 * DAY)  # old, sealed only by the younger checkpoint at 15
        await append(engine, 11, 15, now - 20 * DAY)
        await write_checkpoint(engine, store, 15)
        await append(engine, 16, 18, now - 40 * DAY)  # old but after the latest checkpoint: unsealed

        task = RetentionTask(engine, store, archives, days=30)
        path = await task.tick()
        assert path is not None and path.name == "audit-000000000001-000000000008.jsonl"
        assert await task.tick() is None  # nothing else is both sealed and older than 30 days
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.min(EVENTS.c.seq)))).scalar() == 9
        report = await verify_chain(engine)
        assert (report.ok, report.pruned_through, report.events_checked) == (True, 8, 10), report

    run(db, go)

    from typer.testing import CliRunner

    from gateway.audit.cli import audit_app

    env = {"SHUQIAO_DATABASE_URL": db, "SHUQIAO_VAR_DIR": str(tmp_path / "var")}
    result = CliRunner().invoke(audit_app, ["prune", "--older-than-days", "10"], env=env)
    assert result.exit_code == 0 and "audit-000000000009-000000000015.jsonl" in result.stdout, result.stdout
    result = CliRunner().invoke(audit_app, ["prune", "--older-than-days", "0"], env=env)
    assert "nothing sealed" in result.stdout, result.stdout  # 16..18 are old but after the last checkpoint

    async def after(engine: AsyncEngine) -> None:
        assert sorted(await rows(engine)) == [16, 17, 18]
        assert [a["through_seq"] for a in await anchors(engine)] == [8, 15]
        assert (await verify_retained(engine, store, archives)).ok

    run(db, after)


def test_the_background_task_prunes_on_its_schedule(db: str, store: KeyStore, archives: Path) -> None:
    async def go(engine: AsyncEngine) -> None:
        await append(engine, 1, 5, datetime.now(UTC) - 3 * DAY)
        await write_checkpoint(engine, store)
        task = RetentionTask(engine, store, archives, days=1, every=3600, first_after=0.01)
        task.start()
        try:
            for _ in range(500):
                if task.pruned:
                    break
                await asyncio.sleep(0.01)
        finally:
            await task.stop()
        assert [p.name for p in task.pruned] == ["audit-000000000001-000000000005.jsonl"]

    run(db, go)


def test_two_concurrent_prunes_make_one_archive_and_one_anchor(
    db: str, store: KeyStore, archives: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.audit import retention

    written = retention._write
    both_written = asyncio.Barrier(2)

    async def in_step(*args: Any) -> bytes:
        data = await written(*args)
        await both_written.wait()  # both planned and wrote their file: now they race to commit
        return data

    monkeypatch.setattr(retention, "_write", in_step)

    async def go() -> None:
        setup = create_engine(db)
        engines = [create_engine(db), create_engine(db)]
        try:
            await append(setup, 1, K)
            await write_checkpoint(setup, store)
            await append(setup, K + 1, N)
            results = await asyncio.gather(*(archive_and_prune(e, store, archives) for e in engines))
            winners = [r for r in results if r is not None]
            assert len(winners) == 1 and results.count(None) == 1, results
            assert sorted(p.name for p in archives.iterdir()) == [winners[0].name]  # no stray file
            [anchor] = await anchors(setup)
            assert anchor["archive"] == winners[0].name
            assert anchor["archive_sm3"] == sm3(winners[0].read_bytes()).hex()
            assert sorted(await rows(setup)) == list(range(K + 1, N + 1))
            assert (await verify_chain(setup)).pruned_through == K
            assert (await verify_retained(setup, store, archives)).ok
        finally:
            for e in (setup, *engines):
                await e.dispose()

    asyncio.run(go())


def test_a_prune_planned_before_another_committed_deletes_nothing(
    db: str, store: KeyStore, archives: Path
) -> None:
    from gateway.audit import retention

    async def go(engine: AsyncEngine) -> None:
        await append(engine, 1, K)
        await write_checkpoint(engine, store)
        await append(engine, K + 1, N)
        async with engine.connect() as conn:
            stale = await retention._plan(conn, None, None, None)  # no anchor yet
        await write_checkpoint(engine, store, 12)
        winner = await archive_and_prune(engine, store, archives)  # 1..12
        assert winner is not None
        archives.joinpath("stale.tmp").write_bytes(b"x")
        loser = archives / "audit-000000000001-000000000010.jsonl"
        assert stale is not None
        assert await retention._commit(engine, stale, archives / "stale.tmp", loser, "0" * 64) is None
        assert not loser.exists()
        assert [a["through_seq"] for a in await anchors(engine)] == [12]
        assert sorted(await rows(engine)) == [13, 14, 15]
        assert (archives / "stale.tmp").exists()  # untouched: archive_and_prune removes its own tmp

    run(db, go)


def test_a_whole_stale_prune_returns_none_and_leaves_no_file(
    db: str, store: KeyStore, archives: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.audit import retention

    async def go(engine: AsyncEngine) -> None:
        await append(engine, 1, K)
        await write_checkpoint(engine, store)
        await append(engine, K + 1, N)
        async with engine.connect() as conn:
            stale = await retention._plan(conn, None, None, None)  # no anchor yet
        winner = await archive_and_prune(engine, store, archives)
        assert winner is not None

        async def planned(*args: Any) -> Any:
            return stale

        # its events are gone: the export does not verify, the anchor moved, so it lost the race
        monkeypatch.setattr(retention, "_plan", planned)
        assert await archive_and_prune(engine, store, archives) is None
        assert [p.name for p in archives.iterdir()] == [winner.name]
        assert len(await anchors(engine)) == 1

    run(db, go)
