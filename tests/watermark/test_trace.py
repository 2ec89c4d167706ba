"""The issue's scenario end to end: hrss's delivery leaks as a CSV with half the rows and two
columns gone, columns renamed and reordered, one value in ten edited; `shuqiao watermark trace`
names hrss (false-match probability below 1e-6, not samr) and hrss's audit events, signed.
The audit event of a marked delivery carries the watermark id and never the secret."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from tests.conftest import gql

FIELDS = "creditCode name legalRepresentative registeredCapital establishmentDate district status"
Q = f"{{ enterpriseRegistration(first: 500) {{ edges {{ node {{ {FIELDS} }} }} }} }}"


def _env(demo_env: Any) -> dict[str, str]:
    s = demo_env.settings
    return {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }


def _rows(client: Any, **kw: Any) -> list[dict[str, Any]]:
    body = gql(client, **kw).json()
    assert "errors" not in body, body
    return [e["node"] for e in body["data"]["enterpriseRegistration"]["edges"]]


def mangle(rows: list[dict[str, Any]], seed: int = 7) -> str:
    """Half the rows, two columns dropped, the rest renamed and reordered, 10 % edited."""
    rng = random.Random(seed)
    kept = rng.sample(rows, len(rows) // 2)
    renamed = {
        "registeredCapital": "金额",
        "creditCode": "代码",
        "legalRepresentative": "负责人",
        "establishmentDate": "日期",
        "status": "状态",
    }
    order = ["状态", "金额", "负责人", "代码", "日期"]  # name and district dropped
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=order)
    w.writeheader()
    for r in kept:
        row = {renamed[k]: v for k, v in r.items() if k in renamed}
        if row["金额"] is not None and rng.random() < 0.10:
            row["金额"] = str(Decimal(row["金额"]) + Decimal(rng.randint(1, 999)) / 100)
        w.writerow(row)
    return out.getvalue()


@pytest.fixture(scope="module")
def leak(client: Any, tokens: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = _rows(client, tier="share", query=Q, token=tokens["hrss"])
    assert len(rows) >= 100
    path = tmp_path_factory.mktemp("leak") / "leak.csv"
    path.write_text(mangle(rows), encoding="utf-8-sig")
    return path


def test_trace_names_hrss_and_its_deliveries_signed(leak: Path, demo_env: Any, tmp_path: Path) -> None:
    report_path = tmp_path / "trace.json"
    r = CliRunner().invoke(app, ["watermark", "trace", str(leak), "-o", str(report_path)], env=_env(demo_env))
    assert r.exit_code == 0, r.output
    report = json.loads(report_path.read_text("utf-8"))
    ident = report["identified"]
    assert ident["recipient"] == "hrss"
    assert ident["false_match_probability_adjusted"] < 1e-6
    by = {s["recipient"]: s for s in report["recipients"]}
    assert by.get("samr") is None or by["samr"]["false_match_probability"] > 1e-3
    matched = report["matched"][0]
    assert matched["key_column"] == "代码" and matched["columns"] == {"registered_capital": "金额"}
    assert matched["matched_by"] == {"registered_capital": "values"}
    deliveries = ident["deliveries"]
    assert deliveries and all(d["dataset"] == "enterprise_registration" for d in deliveries)
    assert all(d["watermark_id"].endswith(":hrss") for d in deliveries)
    # the report is evidence: signed with the gateway's SM2 key, verifiable with the public key
    sig = report_path.with_name("trace.json.sig")
    # Other tests of the session may rotate the signing key: the report verifies under exactly one
    # of the gateway's public keys, and under none once tampered with.
    pubs = sorted((demo_env.settings.var_dir / "keys" / "sm2").glob("*.pub.pem"))

    def verifying() -> list[Path]:
        return [
            pub
            for pub in pubs
            if CliRunner()
            .invoke(app, ["verify-response", str(sig), "--body", str(report_path), "--pubkey", str(pub)])
            .exit_code
            == 0
        ]

    assert len(verifying()) == 1
    report_path.write_text(report_path.read_text("utf-8").replace("hrss", "samr"), "utf-8")
    assert verifying() == []

    # the trace itself is an audit event naming who was identified, never the leak's rows
    from sqlalchemy import select

    from gateway.audit.models import AuditEvent
    from tests.support import on_db

    async def traces(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            q = select(AuditEvent.detail).where(AuditEvent.operation_name == "watermark.trace")
            return [row[0] for row in await conn.execute(q)]

    recorded = on_db(demo_env, traces)
    assert any('"identified": "hrss"' in (d or "") or '"identified":"hrss"' in (d or "") for d in recorded)
    codes = [row["代码"] for row in csv.DictReader(io.StringIO(leak.read_text("utf-8-sig")))]
    assert codes and not any(code in (d or "") for code in codes for d in recorded)


def test_trace_of_a_json_lines_leak_and_of_pasted_rows(
    client: Any, tokens: dict[str, str], demo_env: Any, tmp_path: Path
) -> None:
    rows = _rows(client, tier="share", query=Q, token=tokens["samr"])[:120]
    path = tmp_path / "leak.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), "utf-8")
    r = CliRunner().invoke(app, ["watermark", "trace", str(path), "--json"], env=_env(demo_env))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["identified"]["recipient"] == "samr"
    pasted = json.dumps(rows)
    r = CliRunner().invoke(app, ["watermark", "trace", "-", "--json"], input=pasted, env=_env(demo_env))
    assert r.exit_code == 0 and json.loads(r.stdout)["identified"]["recipient"] == "samr"


def test_without_the_key_column_it_says_it_cannot_trace(leak: Path, demo_env: Any, tmp_path: Path) -> None:
    text = leak.read_text("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=["状态", "金额", "负责人", "日期"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    path = tmp_path / "nokey.csv"
    path.write_text(out.getvalue(), "utf-8")
    r = CliRunner().invoke(app, ["watermark", "trace", str(path), "--json"], env=_env(demo_env))
    report = json.loads(r.stdout)
    assert r.exit_code == 1 and report["identified"] is None
    assert "cannot be traced" in report["matched"][0]["problem"]


def test_anonymous_data_traces_to_no_one(client: Any, demo_env: Any, tmp_path: Path) -> None:
    rows = _rows(client, tier="open", query=Q)[:200]
    path = tmp_path / "open.json"
    path.write_text(json.dumps(rows), "utf-8")
    r = CliRunner().invoke(app, ["watermark", "trace", str(path), "--json"], env=_env(demo_env))
    report = json.loads(r.stdout)
    assert r.exit_code == 1 and report["identified"] is None


def _last_event_detail(demo_env: Any, consumer: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        from sqlalchemy import select

        from gateway.audit.models import AuditEvent
        from gateway.db import create_engine

        engine = create_engine(demo_env.settings.database_url)
        try:
            t = AuditEvent.__table__  # type: ignore[attr-defined]
            stmt = select(t.c.detail).where(t.c.consumer == consumer).order_by(t.c.seq.desc()).limit(1)
            async with engine.connect() as conn:
                return json.loads((await conn.execute(stmt)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _secrets(demo_env: Any) -> list[bytes]:
    async def go() -> list[bytes]:
        from gateway.db import create_engine
        from gateway.secrets import load_master_key
        from gateway.watermark_keys import load_watermark_keys

        engine = create_engine(demo_env.settings.database_url)
        try:
            ring = await load_watermark_keys(engine, load_master_key(demo_env.settings.master_key_file))
            return [k.secret for k in ring.all]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_audit_event_carries_the_watermark_id_and_no_secret(
    client: Any, tokens: dict[str, str], demo_env: Any
) -> None:
    _rows(client, tier="share", query=Q, token=tokens["hrss"])
    detail = _last_event_detail(demo_env, "hrss")
    (read,) = [r for r in detail["reads"] if r["dataset"] == "enterprise_registration"]
    mark = read["watermark"]
    assert mark["recipient"] == "hrss" and mark["fields"] == ["registered_capital"]
    assert mark["id"] == f"{mark['scheme']}:{mark['kid']}:hrss" and mark["gamma"] == 0.5
    raw = json.dumps(detail)
    for secret in _secrets(demo_env):
        assert secret.hex() not in raw and secret.hex().upper() not in raw
    # an anonymous read records no watermark
    gql(client, "open", Q)


def test_trace_of_an_xlsx_leak(leak: Path, demo_env: Any, tmp_path: Path) -> None:
    """The same mangled leak, converted to a spreadsheet with numbers as numbers."""
    from openpyxl import Workbook

    rows = list(csv.DictReader(io.StringIO(leak.read_text("utf-8-sig"))))
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    header = list(rows[0])
    ws.append(header)
    for r in rows:
        ws.append([float(r[h]) if h == "金额" and r[h] else r[h] for h in header])
    path = tmp_path / "leak.xlsx"
    wb.save(path)
    r = CliRunner().invoke(app, ["watermark", "trace", str(path), "--json"], env=_env(demo_env))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["identified"]["recipient"] == "hrss"
