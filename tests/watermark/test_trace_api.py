"""POST /audit/api/watermark/trace, the officers' machine twin of `shuqiao watermark trace`: the
leak as the body (CSV, JSON, XLSX); the report names the consumer and its deliveries, with the
exact report bytes and a detached SM2 signature that `shuqiao verify-response` accepts; officers
only (401, 403); each trace is an audit event whose sealed variables hold who was identified,
never the leak's rows."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from tests.watermark.test_trace import Q, _rows, mangle

API = "/audit/api/watermark/trace"


@pytest.fixture(scope="module")
def officer(client: Any, demo_env: Any) -> str:
    from gateway.db import create_engine
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str | None]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
            return await create_client(
                engine, hasher, "police", scopes=["audit:read"], client_id=f"officer-{uuid.uuid4().hex[:6]}"
            )
        finally:
            await engine.dispose()

    cid, secret = asyncio.run(make())
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def leak(client: Any, tokens: dict[str, str]) -> str:
    rows = _rows(client, tier="share", query=Q, token=tokens["hrss"])
    return mangle(rows, seed=11)


def _post(client: Any, token: str | None, body: bytes, content_type: str = "text/csv", **params: str) -> Any:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post(API, content=body, headers=headers, params=params)


def test_a_csv_leak_names_hrss_with_signed_evidence(
    client: Any, officer: str, leak: str, demo_env: Any, tmp_path: Path
) -> None:
    r = _post(client, officer, leak.encode("utf-8-sig"))
    assert r.status_code == 200, r.text
    doc = r.json()
    ident = doc["report"]["identified"]
    assert ident["recipient"] == "hrss" and ident["false_match_probability_adjusted"] < 1e-6
    assert ident["deliveries"] and all(d["watermark_id"].endswith(":hrss") for d in ident["deliveries"])
    # the evidence is the report itself, byte for byte, and its detached signature
    ev = doc["evidence"]
    assert json.loads(ev["report"]) == doc["report"]
    body, sig = tmp_path / ev["filename"], tmp_path / (ev["filename"] + ".sig")
    body.write_text(ev["report"], "utf-8")
    sig.write_bytes(ev["signature"].encode("latin-1"))
    pub = demo_env.settings.var_dir / "keys" / "sm2" / f"{ev['kid']}.pub.pem"
    args = ["verify-response", str(sig), "--body", str(body), "--pubkey", str(pub)]
    assert CliRunner().invoke(app, args).exit_code == 0
    body.write_text(ev["report"].replace("hrss", "samr"), "utf-8")
    assert CliRunner().invoke(app, args).exit_code != 0
    # the trace is an audit event of its own: who was identified, never the rows
    event = _last_trace_event(demo_env)
    assert event["status"] == 200 and event["sealed"]  # the variables are sealed in the chain
    assert "hrss" not in json.dumps(event["plain"]) and "金额" not in json.dumps(event["plain"])
    opened = client.get(f"/audit/api/events/{event['seq']}", headers={"Authorization": f"Bearer {officer}"})
    variables = opened.json()["variables"]
    assert variables["identified"] == "hrss" and variables["matched"] == ["enterprise_registration"]
    assert variables["report_sm3"] and variables["upload_bytes"] == len(leak.encode("utf-8-sig"))


def test_an_xlsx_leak_and_pasted_json(client: Any, officer: str, leak: str, tokens: dict[str, str]) -> None:
    from openpyxl import Workbook

    rows = list(csv.DictReader(io.StringIO(leak)))
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(rows[0]))
    for row in rows:
        ws.append([float(v) if k == "金额" and v else v for k, v in row.items()])
    out = io.BytesIO()
    wb.save(out)
    r = _post(client, officer, out.getvalue(), "application/octet-stream", dataset="enterprise_registration")
    assert r.status_code == 200, r.text
    assert r.json()["report"]["identified"]["recipient"] == "hrss"
    samr = _rows(client, tier="share", query=Q, token=tokens["samr"])[:150]
    r = _post(client, officer, json.dumps(samr).encode(), "text/plain")
    assert r.status_code == 200 and r.json()["report"]["identified"]["recipient"] == "samr", r.text


def test_officers_only_and_unreadable_uploads(client: Any, officer: str, tokens: dict[str, str]) -> None:
    assert _post(client, None, b"a,b\n1,2\n").status_code == 401
    assert _post(client, tokens["hrss"], b"a,b\n1,2\n").status_code == 403
    for body in (b"", b"\xff\xfe\x00garbage", b"PK\x03\x04not a workbook"):
        r = _post(client, officer, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def _last_trace_event(demo_env: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        from sqlalchemy import select

        from gateway.audit.models import AuditEvent
        from gateway.db import create_engine

        engine = create_engine(demo_env.settings.database_url)
        try:
            t = AuditEvent.__table__  # type: ignore[attr-defined]
            stmt = (
                select(t.c.seq, t.c.status, t.c.detail, t.c.variables_enc)
                .where(t.c.operation_name == "watermark-trace")
                .order_by(t.c.seq.desc())
                .limit(1)
            )
            async with engine.connect() as conn:
                row = (await conn.execute(stmt)).one()
            return {"seq": row[0], "status": row[1], "plain": json.loads(row[2] or "{}"), "sealed": row[3]}
        finally:
            await engine.dispose()

    return asyncio.run(go())
