"""SQLite's audit writer in a process of its own (the gateway's sink): it keeps one exact chain
with other writers, fails the batch in flight when it dies (and the next batch gets a new one),
reports SQLite's refusals without stopping, outlives SIGTERM/SIGINT and ends with its gateway."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select

from gateway.audit import ChainedAuditLog, verify_chain
from gateway.audit.models import AuditEvent
from gateway.audit.sqlite_writer import AuditWriterError
from gateway.db import create_engine, upgrade
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    return url


def _writer_pid(sink: ChainedAuditLog) -> int:
    assert sink._sqlite_process is not None
    pid = sink._sqlite_process.pid
    assert pid is not None and pid != os.getpid()
    return pid


async def _ids_and_report(engine: Any) -> tuple[list[str], Any]:
    async with engine.connect() as conn:
        ids = list((await conn.execute(select(EVENTS.c.request_id).order_by(EVENTS.c.seq))).scalars())
    return ids, await verify_chain(engine)


def test_concurrent_records_go_through_the_process_in_batches_and_it_ends_with_the_sink(
    sqlite_url: str,
) -> None:
    async def go() -> tuple[list[str], Any, int, int | None]:
        engine = create_engine(sqlite_url)
        try:
            sink = ChainedAuditLog(engine, hold_connection=True)
            await sink.start()
            pid = _writer_pid(sink)
            await asyncio.gather(*(sink.record(make_event(i, "c")) for i in range(60)))
            batches = sink.batches
            proc = sink._sqlite_process._proc  # type: ignore[union-attr]
            await sink.aclose()  # waits for the process to end
            assert not Path(f"/proc/{pid}").exists()
            return *(await _ids_and_report(engine)), batches, proc.returncode
        finally:
            await engine.dispose()

    ids, report, batches, code = asyncio.run(go())
    assert sorted(ids) == sorted(f"c-{i}" for i in range(60)) and report.ok, report
    assert batches < 60 and code == 0


def test_a_process_writer_and_a_thread_writer_taking_turns_make_one_exact_chain(sqlite_url: str) -> None:
    """Each append by one makes the other's head stale: the process links its copy again and the
    gateway relinks its rows to match, so the witness holds what was stored."""

    async def go() -> tuple[list[str], Any, list[str]]:
        engine = create_engine(sqlite_url)
        try:
            proc_sink, thread_sink = ChainedAuditLog(engine, hold_connection=True), ChainedAuditLog(engine)
            for i in range(8):
                await proc_sink.record(make_event(i, "p"))
                await thread_sink.record(make_event(i, "t"))
            head = proc_sink.witness.head
            await proc_sink.aclose()
            async with engine.connect() as conn:
                stored = (await conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == head[0]))).scalar()
            assert head is not None and stored == head[1]
            return *(await _ids_and_report(engine)), [f"{k}-{i}" for i in range(8) for k in "pt"]
        finally:
            await engine.dispose()

    ids, report, expected = asyncio.run(go())
    assert ids == expected and report.ok and report.events_checked == 16, report


def test_a_killed_writer_fails_its_batch_and_the_next_batch_gets_a_new_one(sqlite_url: str) -> None:
    async def go() -> tuple[list[str], Any]:
        engine = create_engine(sqlite_url)
        try:
            sink = ChainedAuditLog(engine, hold_connection=True)
            await sink.record(make_event(1, "before"))
            first = _writer_pid(sink)
            os.kill(first, signal.SIGKILL)
            with pytest.raises(AuditWriterError, match="exited"):  # fail closed
                await sink.record(make_event(2, "lost"))
            await sink.record(make_event(3, "after"))
            assert _writer_pid(sink) != first
            await sink.aclose()
            return await _ids_and_report(engine)
        finally:
            await engine.dispose()

    ids, report = asyncio.run(go())
    assert ids == ["before-1", "after-3"] and report.ok, report


def test_sqlites_refusal_fails_the_batch_names_no_values_and_the_writer_goes_on(sqlite_url: str) -> None:
    async def go() -> tuple[list[str], Any, str]:
        engine = create_engine(sqlite_url)
        try:
            sink = ChainedAuditLog(engine, hold_connection=True)
            await sink.record(make_event(1, "ok"))
            pid = _writer_pid(sink)
            async with engine.begin() as conn:  # a row in the next event's place, head not moved
                await conn.execute(
                    insert(EVENTS).values(
                        seq=2,
                        occurred_at=datetime.now(UTC),
                        request_id="squat",
                        tier="share",
                        principal_kind="x",
                        principal_id="secret-principal",
                        status=200,
                        error_codes="[]",
                        latency_ms=0.0,
                        detail="{}",
                        prev_hash="0" * 64,
                        hash="f" * 64,
                    )
                )
            with pytest.raises(AuditWriterError) as refused:
                await sink.record(make_event(2, "refused"))
            async with engine.begin() as conn:
                await conn.execute(delete(EVENTS).where(EVENTS.c.request_id == "squat"))
            await sink.record(make_event(3, "again"))
            assert _writer_pid(sink) == pid
            await sink.aclose()
            return *(await _ids_and_report(engine)), str(refused.value)
        finally:
            await engine.dispose()

    ids, report, message = asyncio.run(go())
    assert "UNIQUE constraint failed" in message and "secret-principal" not in message
    assert ids == ["ok-1", "again-3"] and report.ok, report


def test_the_writer_outlives_sigterm_and_sigint(sqlite_url: str) -> None:
    """At shutdown the gateway still appends its last events; the signal a terminal or service
    manager sends to the whole group must not take the writer first."""

    async def go() -> tuple[int, int]:
        engine = create_engine(sqlite_url)
        try:
            sink = ChainedAuditLog(engine, hold_connection=True)
            await sink.record(make_event(1))
            pid = _writer_pid(sink)
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGINT)
            await asyncio.sleep(0.2)
            await sink.record(make_event(2))
            still = _writer_pid(sink)
            await sink.aclose()
            async with engine.connect() as conn:
                count = (await conn.execute(select(func.count()).select_from(EVENTS))).scalar_one()
            return still - pid, count
        finally:
            await engine.dispose()

    assert asyncio.run(go()) == (0, 2)


def test_the_writer_gets_none_of_the_gateways_settings(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A master key given in the environment stays with the gateway: the writer only appends."""
    monkeypatch.setenv("SHUQIAO_MASTER_KEY", "00" * 16 + "feedface")

    async def go() -> bytes:
        engine = create_engine(sqlite_url)
        try:
            sink = ChainedAuditLog(engine, hold_connection=True)
            await sink.start()
            environ = Path(f"/proc/{_writer_pid(sink)}/environ").read_bytes()
            await sink.record(make_event(1))  # and it still works
            await sink.aclose()
            return environ
        finally:
            await engine.dispose()

    environ = asyncio.run(go())
    assert b"SHUQIAO_" not in environ and b"feedface" not in environ and b"PYTHONPATH=" in environ
