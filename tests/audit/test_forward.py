"""Forwarding to the SOC: every event and alert reaches the sink at least once, with its id, across
a receiver that stops and starts again, a gateway that stops between sending and recording, and
two workers sharing one sink. The syslog receiver is Debian's rsyslogd over TLS, started by the
test (tests/audit/syslog_receiver.py); what it writes is parsed as RFC 5424 by the tests' own
strict parser."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, insert

from gateway.access_log import AccessEvent
from gateway.audit.alerts import ALERTS
from gateway.audit.forward import (
    CURSORS,
    DeliveryError,
    Forwarder,
    ForwardTask,
    JsonLinesSink,
    Outgoing,
    SyslogSink,
    forward_status,
)
from gateway.audit.syslog_format import SyslogFormat
from tests.audit.chain_helpers import append, run_with_engine
from tests.audit.rfc5424 import parse
from tests.audit.syslog_receiver import Rsyslog

PEN = 32473


def ev(i: int, principal: str = "hrss-client") -> AccessEvent:
    return AccessEvent(
        request_id=f"req-{i}",
        tier="share",
        principal_kind="department",
        principal_id=principal,
        consumer="hrss",
        client_address="10.0.0.7",
        operation_name="People",
        operation_type="query",
        query_digest=None,
        status=200 if i % 5 else 403,
        error_codes=[] if i % 5 else ["FORBIDDEN_FIELD"],
        latency_ms=1.0,
        fields=[{"dataset": "population", "field": "idNumber", "action": "encrypt" if i % 5 else "deny"}],
        reads=[{"dataset": "population", "rows": 1, "grant_id": 1, "purpose": "社保待遇资格认证"}],
    )


async def add_alert(engine: Any, seq: int) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(ALERTS).values(
                rule="forbidden_probing",
                principal_id='samr"]\\client',
                consumer="samr",
                seq=seq,
                occurred_at=now,
                raised_at=now,
                summary="20 个 FORBIDDEN_FIELD",
                detail="{}",
            )
        )


@pytest.fixture
def fresh(db: str) -> str:
    """The empty chain, no alerts, no forwarding cursors."""

    async def clean(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(delete(ALERTS))
            await conn.execute(delete(CURSORS))

    run_with_engine(db, clean)
    return db


def ids_in(path: Path) -> list[str]:
    return [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()]


def test_json_lines_deliver_each_event_once_and_resume_after_a_restart(fresh: str, tmp_path: Path) -> None:
    out = tmp_path / "soc" / "audit.jsonl"

    async def go(engine: Any) -> None:
        await append(engine, [ev(i) for i in range(1, 6)])
        await add_alert(engine, 3)
        first = Forwarder(engine, JsonLinesSink(out))
        report = await first.run_backlog()
        assert (report.ok, report.events, report.alerts, report.through_seq) == (True, 5, 1, 5)
        await first.release()  # as the gateway's task does when it stops
        # a new process (a restarted gateway) starts from the stored cursor
        again = Forwarder(engine, JsonLinesSink(out))
        assert (await again.run_backlog()).events == 0
        await append(engine, [ev(i) for i in range(6, 9)])
        assert (await again.run_backlog()).events == 3
        async with engine.connect() as conn:
            (status,) = await forward_status(conn)
        assert (status["sink"], status["event_seq"], status["delivered_events"], status["lag_events"]) == (
            "jsonl",
            8,
            8,
            0,
        )

    run_with_engine(fresh, go)
    assert ids_in(out) == [f"event:{i}" for i in range(1, 6)] + ["alert:" + ids_in(out)[5].split(":")[1]] + [
        f"event:{i}" for i in range(6, 9)
    ]
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert first["type"] == "event" and first["purposes"] == ["社保待遇资格认证"] and "variables" not in first
    assert oct(out.stat().st_mode & 0o777) == "0o640"


class CrashAfterSending:
    """Delivers, then fails as a gateway killed before it records the cursor would."""

    name = "jsonl"
    carries_events = True

    def __init__(self, inner: JsonLinesSink) -> None:
        self.inner, self.crash = inner, True

    def describe(self) -> str:
        return self.inner.describe()

    def deliver(self, batch: Sequence[Outgoing]) -> None:
        self.inner.deliver(batch)
        if self.crash:
            raise DeliveryError("simulated stop after sending")


def test_a_round_not_recorded_is_sent_again_never_lost(fresh: str, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    sink = CrashAfterSending(JsonLinesSink(out))

    async def go(engine: Any) -> None:
        await append(engine, [ev(i) for i in range(1, 4)])
        fwd = Forwarder(engine, sink)
        failed = await fwd.run_once()
        assert (failed.ok, failed.through_seq) == (False, 0)
        assert "simulated" in (failed.error or "")
        sink.crash = False
        assert (await fwd.run_once()).events == 3

    run_with_engine(fresh, go)
    counts = collections.Counter(ids_in(out))
    assert set(counts) == {"event:1", "event:2", "event:3"} and set(counts.values()) == {2}


def test_a_line_cut_short_by_a_crash_stays_on_its_own_line(fresh: str, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    out.write_bytes(b'{"type":"event","id":"event:1","se')

    async def go(engine: Any) -> None:
        await append(engine, [ev(1)])
        await Forwarder(engine, JsonLinesSink(out)).run_backlog()

    run_with_engine(fresh, go)
    lines = out.read_bytes().splitlines()
    assert orjson.loads(lines[1])["id"] == "event:1"


def test_two_workers_take_turns_through_the_lease(fresh: str, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"

    async def go(engine: Any) -> None:
        await append(engine, [ev(i) for i in range(1, 4)])
        a, b = Forwarder(engine, JsonLinesSink(out)), Forwarder(engine, JsonLinesSink(out))
        assert (await a.run_once()).events == 3
        await append(engine, [ev(4)])
        busy = await b.run_once()
        assert busy.busy and busy.events == 0  # a holds the lease
        await a.release()
        assert (await b.run_once()).events == 1

    run_with_engine(fresh, go)
    assert ids_in(out) == [f"event:{i}" for i in range(1, 5)]


def test_a_receiver_that_is_down_fails_the_round_without_moving_the_cursor(fresh: str) -> None:
    from tests.support import free_port

    sink = SyslogSink("127.0.0.1", free_port(), SyslogFormat("gw"), tls=False, timeout=2)

    async def go(engine: Any) -> None:
        await append(engine, [ev(1)])
        report = await Forwarder(engine, sink).run_once()
        assert not report.ok and report.error and report.error.startswith("cannot connect")
        async with engine.connect() as conn:
            (status,) = await forward_status(conn)
        assert status["event_seq"] == 0 and status["lag_events"] == 1
        assert status["last_error"].startswith("cannot connect")

    run_with_engine(fresh, go)


def test_rsyslog_over_tls_gets_every_event_across_its_restart(fresh: str, tmp_path: Path) -> None:
    """The forwarder runs as in the gateway (its periodic task); events keep arriving; the receiver
    is stopped mid-stream and started again; every event id and alert id arrives, each message valid
    RFC 5424, duplicates allowed and counted."""
    receiver = Rsyslog(tmp_path)
    receiver.start()
    sink = SyslogSink(
        "127.0.0.1", receiver.port, SyslogFormat("gw-test", "1", PEN), ca_file=receiver.ca, timeout=5
    )
    produced = 120

    async def go(engine: Any) -> dict[str, Any]:
        task = ForwardTask([Forwarder(engine, sink, batch=25)], poll=0.05)
        task.MAX_BACKOFF = 0.2
        task.start()
        try:
            for i in range(1, produced + 1):
                await append(engine, [ev(i)])
                if i % 40 == 0:
                    await add_alert(engine, i)
                if i == 50:
                    await asyncio.to_thread(receiver.stop)  # mid-stream
                if i == 90:
                    await asyncio.to_thread(receiver.start)
                await asyncio.sleep(0.01)
            for _ in range(600):  # until the cursor has everything (bounded: 60 s)
                async with engine.connect() as conn:
                    (status,) = await forward_status(conn)
                if status["lag_events"] == 0 and status["lag_alerts"] == 0:
                    return status
                await asyncio.sleep(0.1)
            raise AssertionError(f"not caught up: {status}")
        finally:
            await task.stop()

    status = run_with_engine(fresh, go)
    receiver.stop()  # flushes what it wrote
    messages = [parse(line) for line in receiver.lines()]
    counts = collections.Counter(
        m.param(f"shuqiao@{PEN}", "id") or m.param(f"shuqiaoAlert@{PEN}", "id") for m in messages
    )
    events = {k for k in counts if k and k.startswith("event:")}
    assert events == {f"event:{i}" for i in range(1, produced + 1)}
    assert len({k for k in counts if k and k.startswith("alert:")}) == 3
    assert status["failed_at"] is not None  # the receiver was down for a while: rounds failed
    duplicates = sum(c - 1 for c in counts.values())
    print(f"{len(messages)} messages for {len(counts)} ids, {duplicates} duplicates")
    for m in messages:
        assert (m.version, m.app, m.facility) == (1, "shuqiao", 13)
        body = orjson.loads(m.text())
        if m.msgid == "audit-alert":
            assert body["principal_id"] == 'samr"]\\client'
            assert m.param(f"shuqiaoAlert@{PEN}", "principalId") == 'samr"]\\client'
        else:
            assert m.param(f"shuqiao@{PEN}", "hash") == body["hash"]
    # rsyslog's own RFC 5424 parser read the same messages: version 1, our app, msgid and SD
    parsed = receiver.parsed_lines()
    assert len(parsed) == len(messages)
    assert all(p.startswith("1 shuqiao audit-") and f"@{PEN} id=" in p for p in parsed)


def test_a_receiver_with_an_untrusted_certificate_is_refused(fresh: str, tmp_path: Path) -> None:
    receiver = Rsyslog(tmp_path)
    receiver.start()
    try:
        sink = SyslogSink("127.0.0.1", receiver.port, SyslogFormat("gw"), timeout=5)  # system CAs only

        async def go(engine: Any) -> Any:
            await append(engine, [ev(1)])
            return await Forwarder(engine, sink).run_once()

        report = run_with_engine(fresh, go)
    finally:
        receiver.stop()
    assert not report.ok and "certificate" in (report.error or "")
    assert receiver.lines() == []


def _one_connection_server(read_all: bool) -> tuple[int, Any]:
    """A plain TCP receiver for one connection: reads everything until our close (read_all), or
    reads a few bytes and closes with the rest unread, as a receiver stopped mid-round does."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    got = bytearray()

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            if read_all:
                while chunk := conn.recv(65536):
                    got.extend(chunk)
            else:
                got.extend(conn.recv(10))
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return int(server.getsockname()[1]), (thread, got)


@pytest.mark.parametrize("read_all", [True, False])
def test_a_round_counts_only_when_the_receiver_closes_after_reading_everything(
    fresh: str, read_all: bool
) -> None:
    port, (thread, got) = _one_connection_server(read_all)
    sink = SyslogSink("127.0.0.1", port, SyslogFormat("gw"), tls=False, timeout=5)

    async def go(engine: Any) -> Any:
        await append(engine, [ev(i) for i in range(1, 301)])
        return await Forwarder(engine, sink, batch=300).run_once()

    report = run_with_engine(fresh, go)
    thread.join(10)
    if read_all:
        assert report.ok and report.through_seq == 300
        assert got.count(b"audit-event") == 300
    else:
        assert not report.ok and report.through_seq == 0 and "not confirmed" in (report.error or "")


def test_cli_forward_once_json_and_status(fresh: str, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from gateway.audit.cli import audit_app

    out = tmp_path / "audit.jsonl"
    run_with_engine(fresh, lambda engine: append(engine, [ev(i) for i in range(1, 4)]))
    env = {"SHUQIAO_DATABASE_URL": fresh, "SHUQIAO_AUDIT_FORWARD_JSONL": str(out)}
    result = CliRunner().invoke(audit_app, ["forward", "--once", "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    (sent,) = doc["delivered"]
    assert (sent["sink"], sent["ok"], sent["events"], sent["through_seq"]) == ("jsonl", True, 3, 3)
    assert doc["sinks"][0]["lag_events"] == 0 and doc["sinks"][0]["holder"] is None  # released
    assert ids_in(out) == ["event:1", "event:2", "event:3"]

    status = CliRunner().invoke(audit_app, ["forward", "--status", "--json"], env=env)
    assert status.exit_code == 0 and json.loads(status.output)["delivered"] == []

    down = CliRunner().invoke(
        audit_app,
        ["forward", "--once"],
        env={
            "SHUQIAO_DATABASE_URL": fresh,
            "SHUQIAO_AUDIT_SYSLOG_TARGET": "127.0.0.1:1",
            "SHUQIAO_AUDIT_SYSLOG_TLS": "off",
        },
    )
    assert down.exit_code == 1 and "FAILED: cannot connect" in down.output

    none = CliRunner().invoke(audit_app, ["forward", "--once"], env={"SHUQIAO_DATABASE_URL": fresh})
    assert none.exit_code == 2 and "no sink" in none.output
