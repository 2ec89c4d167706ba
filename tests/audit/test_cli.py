"""`shuqiao audit verify [--json]` and `shuqiao audit export` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import delete
from typer.testing import CliRunner

from gateway.audit import ChainedAuditLog
from gateway.audit.cli import audit_app
from gateway.audit.models import AuditEvent
from gateway.cli import app as shuqiao_app
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


def _run(url: str, *args: str, var_dir: Path | None = None) -> tuple[int, str]:
    env = {"SHUQIAO_DATABASE_URL": url, **({"SHUQIAO_VAR_DIR": str(var_dir)} if var_dir else {})}
    result = CliRunner().invoke(audit_app, list(args), env=env)
    return result.exit_code, result.stdout


def test_verify_json_reports_ok_then_the_first_broken_position(url: str) -> None:
    _append(url, 12)
    code, out = _run(url, "verify", "--json")
    assert (code, json.loads(out)) == (
        0,
        {"ok": True, "events_checked": 12, "first_bad_seq": None, "reason": None},
    )

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


def test_verify_workers_gives_the_same_report(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--workers 3` (ranges of one event and more, on PostgreSQL in worker processes) reports what
    `--workers 1` does, intact and broken."""
    from gateway.audit import verify

    monkeypatch.setattr(verify, "MIN_RANGE", 1)
    _append(url, 12)
    outs = [_run(url, "verify", "--json", "--workers", w) for w in ("1", "3")]
    assert outs[0] == outs[1] and outs[0][0] == 0 and json.loads(outs[0][1])["events_checked"] == 12

    async def tamper() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(delete(EVENTS).where(EVENTS.c.seq == 9))
        await engine.dispose()

    asyncio.run(tamper())
    outs = [_run(url, "verify", "--json", "--workers", w) for w in ("1", "3")]
    assert outs[0] == outs[1] and outs[0][0] == 1 and json.loads(outs[0][1])["first_bad_seq"] == 9


def test_export_csv_with_bom_and_json(url: str, tmp_path: Path) -> None:
    from gateway.crypto.signing import open_signing_store

    _append(url, 6)
    var = tmp_path / "var"
    key = open_signing_store(var).current()[0]
    target = tmp_path / "out.csv"
    code, _ = _run(
        url,
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2999-12-31",
        "--format",
        "csv",
        "-o",
        str(target),
        var_dir=var,
    )
    raw = target.read_bytes()
    assert code == 0 and raw.startswith(b"\xef\xbb\xbf")
    # the detached signature beside it verifies with only the public key, and not once changed
    pub = var / "keys" / "sm2" / f"{key.kid}.pub.pem"
    sig = tmp_path / "out.csv.sig"
    check = ["verify-response", str(sig), "--body", str(target), "--pubkey", str(pub), "--json"]
    result = CliRunner().invoke(shuqiao_app, check)
    assert result.exit_code == 0 and json.loads(result.stdout)["keyid"] == key.kid, result.stdout
    target.write_bytes(raw.replace(b"clear", b"CLEAR", 1))
    result = CliRunner().invoke(shuqiao_app, check)
    assert result.exit_code == 1 and "Content-Digest does not match" in result.stdout
    target.write_bytes(raw)
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["fields"] == "ds1.名称:clear"
    code, out = _run(url, "export", "--format", "json", "--department", "D001")
    events = json.loads(out)["events"]
    assert code == 0 and [e["seq"] for e in events] == [1, 3, 5]
    code, _ = _run(url, "export", "--from", "last tuesday")
    assert code == 2
    # no signing key: no file-export at all (an unsigned export must not look like a signed one)
    code, _ = _run(url, "export", "-o", str(tmp_path / "nokey.csv"), var_dir=tmp_path / "empty")
    assert code == 1 and not (tmp_path / "nokey.csv").exists()
