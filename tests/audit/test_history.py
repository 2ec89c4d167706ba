"""One verification over the whole history — the archived ranges retention left and the live chain,
each named, with the anchors between them — and a search over the archives without re-importing
them; `shuqiao audit verify` and `shuqiao audit search --archived` (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import update
from typer.testing import CliRunner

import gateway.audit.history as history
from gateway.audit.checkpoints import write_checkpoint
from gateway.audit.history import search_archives, verify_history
from gateway.audit.models import AuditEvent
from gateway.audit.query import Filters
from gateway.audit.retention import archive_and_prune
from gateway.crypto.signing import open_signing_store
from tests.audit.chain_helpers import append, run_with_engine
from tests.audit.test_forward import ev

EVENTS = AuditEvent.__table__


def _two_prunes(db: str, var: Path) -> Any:
    store = open_signing_store(var)
    directory = var / "audit-archive"

    async def go(engine: Any) -> tuple[Path, Path]:
        await append(engine, [ev(i, principal="early") for i in range(1, 11)])
        await write_checkpoint(engine, store)
        await append(engine, [ev(i) for i in range(11, 16)])
        first = await archive_and_prune(engine, store, directory)
        await write_checkpoint(engine, store, 13)
        second = await archive_and_prune(engine, store, directory)
        await append(engine, [ev(16)])
        assert first is not None and second is not None
        return first, second

    first, second = run_with_engine(db, go)
    return store, directory, first, second


def test_one_verification_names_the_archived_and_live_ranges_and_their_anchors(
    db: str, tmp_path: Path
) -> None:
    store, directory, first, second = _two_prunes(db, tmp_path / "var")

    report = run_with_engine(db, lambda e: verify_history(e, store, directory))
    assert report.ok, report
    shape = [(s.kind, s.from_seq, s.to_seq, s.events, s.archive) for s in report.segments]
    assert shape == [
        ("archived", 1, 10, 10, first.name),
        ("archived", 11, 13, 3, second.name),
        ("live", 14, 16, 3, None),
    ]
    assert report.segments[0].anchor_hash and report.segments[1].anchor_hash
    assert (report.archived_events, report.live_events) == (13, 3)

    # the anchors are what joins the ranges: a live event that no longer links is reported there
    async def unlink(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(update(EVENTS).where(EVENTS.c.seq == 14).values(prev_hash="0" * 64))

    run_with_engine(db, unlink)
    broken = run_with_engine(db, lambda e: verify_history(e, store, directory))
    assert not broken.ok and broken.segments[-1].kind == "live" and broken.first_bad_seq == 14

    # one changed byte in an archive, or a missing archive, is reported in its archived segment
    data = first.read_bytes()
    first.write_bytes(data.replace(b'"status":200', b'"status":201', 1))
    changed = run_with_engine(db, lambda e: verify_history(e, store, directory))
    assert not changed.ok and changed.segments[0].kind == "archived" and not changed.segments[0].ok
    assert "SM3" in (changed.reason or "")
    first.unlink()
    missing = run_with_engine(db, lambda e: verify_history(e, store, directory))
    assert not missing.ok and "missing" in (missing.reason or "")


def test_archived_events_are_searched_in_place(db: str, tmp_path: Path) -> None:
    _, directory, first, _ = _two_prunes(db, tmp_path / "var")
    found = run_with_engine(db, lambda e: search_archives(e, directory, Filters(principal="early")))
    assert [d["seq"] for d in found["events"]] == list(range(10, 0, -1))  # newest first
    assert {d["archive"] for d in found["events"]} == {first.name} and found["total"] == 10
    denied = run_with_engine(
        db, lambda e: search_archives(e, directory, Filters(dataset="population", decision="deny"))
    )
    assert [d["seq"] for d in denied["events"]] == [10, 5]  # ev(i) is refused when i % 5 == 0
    paged = run_with_engine(db, lambda e: search_archives(e, directory, Filters(), limit=4, before=12))
    assert [d["seq"] for d in paged["events"]] == [11, 10, 9, 8] and paged["next_before"] == 8
    # the total counts every match, as the live search's does, not only those past `before`
    assert paged["total"] == 13 and paged["missing"] == []
    last = run_with_engine(db, lambda e: search_archives(e, directory, Filters(), limit=4, before=4))
    assert [d["seq"] for d in last["events"]] == [3, 2, 1] and last["next_before"] is None


def test_an_archive_missing_from_the_directory_is_named_not_read(db: str, tmp_path: Path) -> None:
    _, directory, first, second = _two_prunes(db, tmp_path / "var")
    first.unlink()
    found = run_with_engine(db, lambda e: search_archives(e, directory, Filters()))
    assert (found["archives"], found["missing"]) == ([second.name], [first.name])
    assert [d["seq"] for d in found["events"]] == [13, 12, 11] and found["total"] == 3


def test_the_archives_are_read_off_the_event_loop(db: str, tmp_path: Path) -> None:
    """A long archive search must not stall the gateway's other requests: while the files are
    read, the loop keeps turning."""
    _, directory, _, _ = _two_prunes(db, tmp_path / "var")
    real = history.archived_events
    reading = threading.Event()
    release = threading.Event()

    def slow(directory: Path, names: list[str]) -> Any:
        reading.set()
        assert release.wait(10), "the loop never ran while the archives were read"
        yield from real(directory, names)

    async def go(engine: Any) -> dict[str, Any]:
        search = asyncio.create_task(search_archives(engine, directory, Filters()))
        while not reading.is_set():  # this loop runs only if the read is elsewhere
            await asyncio.sleep(0.01)
        release.set()
        return await search

    history.archived_events = slow
    try:
        found = run_with_engine(db, go)
    finally:
        history.archived_events = real
    assert found["total"] == 13


def test_cli_verify_covers_the_whole_history_and_search_reads_archives(db: str, tmp_path: Path) -> None:
    from gateway.audit.cli import audit_app

    var = tmp_path / "var"
    _two_prunes(db, var)
    env = {"SHUQIAO_DATABASE_URL": db, "SHUQIAO_VAR_DIR": str(var)}
    human = CliRunner().invoke(audit_app, ["verify"], env=env)
    assert human.exit_code == 0, human.output
    assert "archived 1..10" in human.output and "archived 11..13" in human.output
    assert "live 14..16" in human.output and "anchor" in human.output
    doc = json.loads(CliRunner().invoke(audit_app, ["verify", "--json"], env=env).output)
    assert doc["ok"] and doc["events_checked"] == 3 and doc["pruned_through"] == 13
    assert [s["kind"] for s in doc["segments"]] == ["archived", "archived", "live"]
    found = CliRunner().invoke(audit_app, ["search", "--archived", "--principal", "early", "--json"], env=env)
    assert found.exit_code == 0, found.output
    assert [e["seq"] for e in json.loads(found.output)["events"]][:2] == [10, 9]


def test_the_json_twins_verify_the_whole_history_and_search_the_archives(db: str, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from gateway.access_log import LoggingAccessLog
    from gateway.audit.http import AuditAPI
    from gateway.db import create_engine

    store, directory, first, _ = _two_prunes(db, tmp_path / "var")
    officer = SimpleNamespace(client_id="officer", subject=None, department="police")

    async def bearer(request: Any) -> Any:
        return officer

    engine = create_engine(db)
    api = AuditAPI(engine, LoggingAccessLog(), bearer, None, 1000, archives=(store, directory))
    with TestClient(Starlette(routes=[Mount("/audit", routes=api.routes())])) as client:
        doc = client.get("/audit/api/verify").json()
        assert doc["ok"] and doc["pruned_through"] == 13
        assert [(s["kind"], s["from_seq"], s["to_seq"]) for s in doc["segments"]] == [
            ("archived", 1, 10),
            ("archived", 11, 13),
            ("live", 14, 16),
        ]
        found = client.get("/audit/api/archive/events", params={"principal": "early", "limit": 3}).json()
        assert [e["seq"] for e in found["events"]] == [10, 9, 8] and found["next_before"] == 8
        first.unlink()
        broken = client.get("/audit/api/verify").json()
        assert not broken["ok"] and "missing" in broken["reason"]
    import asyncio

    asyncio.run(engine.dispose())


def test_the_callers_live_report_is_used_when_it_starts_at_the_last_anchor(
    db: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """`shuqiao audit verify` and the JSON API pass the report they have: the live chain is not
    walked a second time, unless a prune came in between (the report's anchor is not the last)."""
    from gateway.audit import history
    from gateway.audit.verify import VerifyReport, verify_chain

    store, directory, _, _ = _two_prunes(db, tmp_path / "var")
    live = run_with_engine(db, verify_chain)
    walks: list[int] = []

    async def counted(engine: Any) -> VerifyReport:
        walks.append(1)
        return await verify_chain(engine)

    monkeypatch.setattr(history, "verify_chain", counted)
    report = run_with_engine(db, lambda e: verify_history(e, store, directory, live))
    assert report.ok and report.segments[-1].events == 3 and walks == []
    stale = VerifyReport(True, 6, pruned_through=10)  # made before the second prune
    report = run_with_engine(db, lambda e: verify_history(e, store, directory, stale))
    assert report.ok and report.segments[-1].events == 3 and walks == [1]
