"""Retention on SQLite and PostgreSQL: sealed segments archived to signed files and pruned, the
checkpoint kept as the anchor; verification still spans the pruned range and catches a changed
archive or a rewritten remainder."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gateway.audit.checkpoints import write_checkpoint
from gateway.audit.models import AuditEvent
from gateway.audit.retention import archive_and_prune, verify_retained
from gateway.crypto.signing import open_signing_store
from gateway.db import create_engine
from tests.audit.chain_helpers import append
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__


def test_archive_prune_and_verify_across_the_pruned_range(db: str, tmp_path: Path) -> None:
    store = open_signing_store(tmp_path / "var")
    directory = tmp_path / "var" / "audit-archive"

    async def go() -> None:
        engine = create_engine(db)
        try:
            assert await archive_and_prune(engine, store, directory) is None  # nothing sealed
            await append(engine, [make_event(i) for i in range(1, 11)])
            await write_checkpoint(engine, store)
            await append(engine, [make_event(i) for i in range(11, 16)])
            first = await archive_and_prune(engine, store, directory)
            assert first is not None and first.name == "audit-000000000001-000000000010.jsonl"
            await write_checkpoint(engine, store, 13)
            second = await archive_and_prune(engine, store, directory)
            assert second is not None and second.name == "audit-000000000011-000000000013.jsonl"
            async with engine.connect() as conn:
                assert (await conn.execute(select(func.min(EVENTS.c.seq)))).scalar() == 14
            await append(engine, [make_event(16)])
            report = await verify_retained(engine, store, directory)
            assert (report.ok, report.events_checked, report.checkpoints_checked) == (True, 16, 2), report

            # a rewritten remainder no longer links to the anchor
            async with engine.begin() as conn:
                await conn.execute(update(EVENTS).where(EVENTS.c.seq == 14).values(prev_hash="0" * 64))
            report = await verify_retained(engine, store, directory)
            assert not report.ok and report.first_bad_seq == 14
            async with engine.begin() as conn:  # undo: the link again
                await conn.execute(
                    update(EVENTS)
                    .where(EVENTS.c.seq == 14)
                    .values(prev_hash=second.read_bytes().split(b'"hash":"')[-1][:64].decode())
                )
            assert (await verify_retained(engine, store, directory)).ok

            # one changed byte in an archive, or a missing archive, is caught
            data = first.read_bytes()
            first.write_bytes(data.replace(b'"status":200', b'"status":201', 1))
            report = await verify_retained(engine, store, directory)
            assert not report.ok and report.first_bad_seq == 1
            first.unlink()
            report = await verify_retained(engine, store, directory)
            assert not report.ok and "does not link" in (report.reason or "")
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_cli_prune_and_verify_retained(db: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.audit.cli import audit_app

    async def fill() -> None:
        engine = create_engine(db)
        try:
            await append(engine, [make_event(i) for i in range(1, 6)])
        finally:
            await engine.dispose()

    asyncio.run(fill())
    env = {"SHUQIAO_DATABASE_URL": db, "SHUQIAO_VAR_DIR": str(tmp_path / "var")}
    open_signing_store(tmp_path / "var")
    runner = CliRunner()
    assert "nothing sealed" in runner.invoke(audit_app, ["prune"], env=env).stdout
    assert runner.invoke(audit_app, ["checkpoint"], env=env).exit_code == 0
    result = runner.invoke(audit_app, ["prune"], env=env)
    assert result.exit_code == 0 and "audit-000000000001-000000000005.jsonl" in result.stdout
    result = runner.invoke(audit_app, ["verify-retained"], env=env)
    assert result.exit_code == 0 and "5 events" in result.stdout, result.stdout


def test_retention_prunes_nothing_a_soc_sink_has_not_delivered(db: str, tmp_path: Path) -> None:
    """With a forwarding sink configured, scheduled retention stops at its cursor: checkpoints at
    4 and 10, the sink has delivered through 6, so only 1–4 go; once it has delivered all, 5–10."""
    from sqlalchemy import delete

    from gateway.audit.forward import CURSORS, Forwarder, JsonLinesSink, delivered_by_all
    from gateway.audit.retention import RetentionTask

    store = open_signing_store(tmp_path / "var")
    directory = tmp_path / "var" / "audit-archive"
    sink = JsonLinesSink(tmp_path / "soc.jsonl")

    async def go() -> None:
        engine = create_engine(db)
        try:
            async with engine.begin() as conn:
                await conn.execute(delete(CURSORS))
            await append(engine, [make_event(i) for i in range(1, 11)])
            await write_checkpoint(engine, store, 4)
            await write_checkpoint(engine, store, 10)
            # days=0: every sealed event is old enough; only the sink holds retention back
            held = lambda: delivered_by_all(engine, [sink])  # noqa: E731
            task = RetentionTask(engine, store, directory, days=0, held=held)
            assert await task.tick() is None  # the sink has delivered nothing yet
            forwarder = Forwarder(engine, sink, batch=6)
            await forwarder.run_once()
            first = await task.tick()
            assert first is not None and first.name == "audit-000000000001-000000000004.jsonl"
            forwarder.batch = 500
            await forwarder.run_backlog(until_caught_up=True)
            second = await task.tick()
            assert second is not None and second.name == "audit-000000000005-000000000010.jsonl"
        finally:
            await engine.dispose()

    asyncio.run(go())
    lines = (tmp_path / "soc.jsonl").read_text().splitlines()
    delivered = [line for line in lines if '"type":"event"' in line]
    assert len(delivered) == 10  # every event reached the SOC before it was pruned


def test_retention_counts_pending_usage_before_it_prunes(db: str, tmp_path: Path) -> None:
    """The portal's usage rollup reads the chain too: retention has it count what is pending
    first, so the public statistics never lose an event to a prune."""
    from sqlalchemy import delete

    from gateway.audit.retention import RetentionTask, prune_limit
    from gateway.portal.usage import CURSOR, counted_through, rolled_up_through

    store = open_signing_store(tmp_path / "var")

    async def go() -> None:
        engine = create_engine(db)
        try:
            async with engine.begin() as conn:
                await conn.execute(delete(CURSOR))  # the rollup has counted nothing of this chain
            await append(engine, [make_event(i) for i in range(1, 6)])
            last = await write_checkpoint(engine, store)
            assert last is not None
            held = lambda: prune_limit(engine, [counted_through])  # noqa: E731
            task = RetentionTask(engine, store, tmp_path / "archive", days=0, held=held)
            before = await rolled_up_through(engine)
            pruned = await task.tick()
            assert pruned is not None and before < last.seq <= await rolled_up_through(engine)
            assert await prune_limit(engine, []) is None  # no reader holds anything back
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_a_prune_reads_the_anchor_once_and_a_stale_one_loses_cleanly(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prune anchor is read once per prune, though both the month check and the plan use it;
    a prune that another worker completes after that read makes this one step back (None), with
    the winner's archive and anchor intact and nothing else deleted."""
    from gateway.audit import retention
    from gateway.audit.checkpoints import ANCHORS

    store = open_signing_store(tmp_path / "var")
    directory = tmp_path / "var" / "audit-archive"
    reads: list[int] = []
    real_anchor, real_plan = retention.latest_anchor, retention._plan

    async def counted(conn: Any) -> Any:
        reads.append(1)
        return await real_anchor(conn)

    monkeypatch.setattr(retention, "latest_anchor", counted)

    async def go() -> None:
        engine = create_engine(db)
        try:
            await append(engine, [make_event(i) for i in range(1, 11)])
            await write_checkpoint(engine, store, 4)
            old = datetime.now(UTC) + timedelta(days=1)  # every event is old enough
            first = await archive_and_prune(engine, store, directory, through_seq=4, older_than=old)
            assert first is not None and first.name == "audit-000000000001-000000000004.jsonl"
            assert len(reads) == 1

            await write_checkpoint(engine, store, 7)
            await write_checkpoint(engine, store, 10)
            won: list[Path | None] = []

            async def beaten(conn: Any, anchor: Any, *args: Any) -> Any:
                if not won:  # another worker prunes through 7 after this one read the anchor
                    monkeypatch.setattr(retention, "_plan", real_plan)
                    won.append(await archive_and_prune(engine, store, directory, through_seq=7))
                return await real_plan(conn, anchor, *args)

            monkeypatch.setattr(retention, "_plan", beaten)
            reads.clear()
            assert await archive_and_prune(engine, store, directory, through_seq=10) is None
            assert len(reads) == 3  # this prune's one, the winner's one, and the loser's race check
            assert won[0] is not None and won[0].name == "audit-000000000005-000000000007.jsonl"
            async with engine.connect() as conn:
                assert (await conn.execute(select(func.min(EVENTS.c.seq)))).scalar() == 8
                assert (await conn.execute(select(func.max(ANCHORS.c.through_seq)))).scalar() == 7
            assert sorted(p.name for p in directory.iterdir()) == [first.name, won[0].name]
            assert (await verify_retained(engine, store, directory)).ok
            reads.clear()
            third = await archive_and_prune(engine, store, directory)
            assert third is not None and third.name == "audit-000000000008-000000000010.jsonl"
            assert len(reads) == 1
        finally:
            await engine.dispose()

    asyncio.run(go())
