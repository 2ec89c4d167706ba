"""`shuqiao audit verify [--json]` and `shuqiao audit export` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

from sqlalchemy import delete
from typer.testing import CliRunner

from gateway.audit import ChainedAuditLog
from gateway.audit.cli import audit_app
from gateway.audit.models import AuditEvent
from gateway.db import create_engine
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__


def _append(url: str, n: int) -> None:
    async def go() -> None:
        engine = create_engine(url)
        try:
            log = ChainedAuditLog(engine)
            for i in range(1, n + 1):
                await log.record(make_event(i))
        finally:
            await engine.dispose()

    asyncio.run(go())


def _run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(audit_app, list(args), env={"SHUQIAO_DATABASE_URL": url})
    return result.exit_code, result.stdout


def test_verify_json_reports_ok_then_the_first_broken_position(url: str) -> None:
    _append(url, 12)
    code, out = _run(url, "verify", "--json")
    assert (code, json.loads(out)) == (0, {"ok": True, "events_checked": 12, "first_bad_seq": None,
                                           "reason": None})

    async def tamper() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(delete(EVENTS).where(EVENTS.c.seq == 5))
        await engine.dispose()

    asyncio.run(tamper())
    code, out = _run(url, "verify", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["first_bad_seq"] == 5
    code, out = _run(url, "verify")
    assert code == 1 and "BROKEN at seq 5" in out


def test_export_csv_with_bom_and_json(url: str, tmp_path: Path) -> None:
    _append(url, 6)
    target = tmp_path / "out.csv"
    code, _ = _run(url, "export", "--from", "2000-01-01", "--to", "2999-12-31", "--format", "csv",
                   "-o", str(target))
    raw = target.read_bytes()
    assert code == 0 and raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["fields"] == "ds1.名称:clear"
    code, out = _run(url, "export", "--format", "json", "--department", "D001")
    events = json.loads(out)["events"]
    assert code == 0 and [e["seq"] for e in events] == [1, 3, 5]
    code, _ = _run(url, "export", "--from", "last tuesday")
    assert code == 2
