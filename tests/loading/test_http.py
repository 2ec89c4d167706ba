"""`POST /admin/data/{dataset}/load`: the one bearer check (catalog:write; a steward only for
their own department), the one problem shape with the rejects in extensions, one audit event."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from typing import Any

import pytest

from tests.identity.test_audit_events import _rid, events
from tests.loading.support import CHARGER_HEADER, CHARGERS, charger_rows, credit_code

# An unpublished dataset of samr's in the shared demo store: no schema shows it.
DATASET = replace(
    CHARGERS, code="loading_http_chargers", resource_code="LOAD-HTTP-1", department="samr", published=False
)


@pytest.fixture(scope="module")
def dataset(demo_env: Any) -> str:
    from catalogue import service
    from gateway.db import create_engine

    async def go() -> None:
        engine = create_engine(demo_env.settings.database_url)
        try:
            await service.save_dataset(engine, DATASET)
        finally:
            await engine.dispose()

    asyncio.run(go())
    return DATASET.code


def one(demo_env: Any, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's `data.load` event and its detail; on SQLite a `data.load.start` before it
    for a load that got as far as writing (gateway.loading.service)."""
    import json

    rows = events(demo_env, request_id)
    ops = [r["operation_name"] for r in rows]
    assert ops in (["data.load"], ["data.load.start", "data.load"]), ops
    assert ops == ["data.load"] or demo_env.backend == "sqlite"
    row = rows[-1]
    return row, json.loads(row["detail"])["reads"][0]["identity"]


def token(
    demo_env: Any, scopes: list[str], department: str | None = None, client_id: str = "ops-console"
) -> str:
    from gateway.identity.tokens import TokenService, load_signing_key

    svc = TokenService(
        load_signing_key(demo_env.settings.var_dir / "keys" / "token-es256.pem"), "http://testserver"
    )
    issued, _ = svc.issue(client_id, department, scopes, subject="steward-wang")
    return issued


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    out.write(",".join(CHARGER_HEADER) + "\n")
    for r in rows:
        out.write(",".join(r) + "\n")
    return out.getvalue().encode()


def post(
    client: Any, path: str, body: bytes, bearer: str | None, media: str = "text/csv", **params: str
) -> Any:
    rid = _rid()
    headers = {"Content-Type": media, "X-Request-ID": rid}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    r = client.post(path, content=body, headers=headers, params=params)
    r.request_id = rid
    return r


def test_admin_loads_and_the_event_has_counts_and_digest(client: Any, demo_env: Any, dataset: str) -> None:
    body = csv_bytes(list(charger_rows(40)))
    r = post(client, f"/admin/data/{dataset}/load", body, token(demo_env, ["admin"]), mode="replace")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["read"], out["loaded"], out["row_count"], out["mode"]) == (40, 40, 40, "replace")
    from keys.sm3 import sm3

    assert out["digest"] == "sm3:" + sm3(body).hex()
    row, detail = one(demo_env, r.request_id)
    assert row["operation_name"] == "data.load" and row["status"] == 200
    assert detail["target"] == dataset and detail["read"] == 40 and detail["digest"] == out["digest"]
    assert "S0000001" not in str(row)  # counts, never row values


def test_a_steward_loads_only_their_departments_datasets(client: Any, demo_env: Any, dataset: str) -> None:
    body = csv_bytes(list(charger_rows(3, 100)))
    own = post(client, f"/admin/data/{dataset}/load", body, token(demo_env, ["catalog:write"], "samr"))
    assert own.status_code == 200, own.text
    other = post(client, f"/admin/data/{dataset}/load", body, token(demo_env, ["catalog:write"], "hrss"))
    assert other.status_code == 403
    assert other.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    row, _ = one(demo_env, other.request_id)
    assert row["status"] == 403
    reader = post(client, f"/admin/data/{dataset}/load", body, token(demo_env, ["audit:read"], "samr"))
    assert reader.status_code == 403 and "catalog:write" in reader.json()["errors"][0]["message"]
    anonymous = post(client, f"/admin/data/{dataset}/load", body, None)
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_rejected_rows_are_a_422_with_the_rejects_in_extensions(
    client: Any, demo_env: Any, dataset: str
) -> None:
    rows = list(charger_rows(3, 200))
    rows[1][2] = credit_code(1)[:-1] + ("0" if credit_code(1)[-1] != "0" else "1")
    r = post(client, f"/admin/data/{dataset}/load", csv_bytes(rows), token(demo_env, ["admin"]))
    assert r.status_code == 422
    [error] = r.json()["errors"]
    ext = error["extensions"]
    assert ext["code"] == "ROWS_REJECTED" and ext["rejected"] == 1 and ext["read"] == 3
    assert (
        ext["rejects"]
        == [{"row": 3, "column": "operator_credit_code", "reason": ext["rejects"][0]["reason"]}]
        and "统一社会信用代码" in ext["rejects"][0]["reason"]
    )
    assert "nothing was loaded" in error["message"]
    row, detail = one(demo_env, r.request_id)
    assert row["status"] == 422 and detail["rejected"] == 1 and detail["loaded"] == 0


def test_bad_requests(client: Any, demo_env: Any, dataset: str) -> None:
    admin = token(demo_env, ["admin"])
    r = post(client, f"/admin/data/{dataset}/load", b"a,b\n", admin, media="application/pdf")
    assert r.status_code == 415 and r.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    r = post(client, "/admin/data/no_such_dataset/load", b"a\n", admin)
    assert r.status_code == 404
    r = post(client, f"/admin/data/{dataset}/load", b"colour\nred\n", admin)
    assert r.status_code == 400 and "unknown column 'colour'" in r.json()["errors"][0]["message"]
    r = post(client, f"/admin/data/{dataset}/load", csv_bytes([]), admin, mode="sideways")
    assert r.status_code == 400


def test_json_lines_upload(client: Any, demo_env: Any, dataset: str) -> None:
    import json

    lines = "".join(
        json.dumps(dict(zip(CHARGER_HEADER, r, strict=True)), ensure_ascii=False) + "\n"
        for r in charger_rows(5, 300)
    )
    r = post(
        client,
        f"/admin/data/{dataset}/load",
        lines.encode(),
        token(demo_env, ["admin"]),
        "application/x-ndjson",
    )
    assert r.status_code == 200, r.text
    assert r.json()["loaded"] == 5


def test_the_explorer_catalogue_shows_size_and_freshness(client: Any, demo_env: Any) -> None:
    from gateway.db import create_engine
    from gateway.loading.writer import upsert_status

    async def status(values: dict[str, Any] | None) -> None:
        engine = create_engine(demo_env.settings.database_url)
        try:
            async with engine.begin() as conn:
                if values is None:
                    await conn.exec_driver_sql(
                        "DELETE FROM dataset_status WHERE dataset_code = 'air_quality_daily'"
                    )
                else:
                    await upsert_status(conn, "air_quality_daily", values)
        finally:
            await engine.dispose()

    from datetime import UTC, datetime

    at = datetime(2026, 5, 1, 8, tzinfo=UTC)
    asyncio.run(
        status({"row_count": 1234, "last_load_at": at, "last_change_at": at, "last_load_digest": "sm3:ab"})
    )
    try:
        r = client.get("/explore/api/catalogue")
        assert r.status_code == 200
        by_code = {d["code"]: d for d in r.json()["datasets"]}
        aq = by_code["air_quality_daily"]
        assert (
            aq["rowCount"] == 1234
            and aq["lastChangeAt"].startswith("2026-05-01")
            and aq["lastSyncAt"] is None
        )
        assert "sm3:ab" not in r.text  # the digest is the steward's, not the public's
        assert by_code["enterprise_registration"]["rowCount"] > 0  # the demo loader records it too
    finally:
        asyncio.run(status(None))


def test_xlsx_upload(client: Any, demo_env: Any, dataset: str) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(CHARGER_HEADER)
    for r in charger_rows(6, 400):
        sheet.append(r)
    buffer = io.BytesIO()
    book.save(buffer)
    media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    r = post(client, f"/admin/data/{dataset}/load", buffer.getvalue(), token(demo_env, ["admin"]), media)
    assert r.status_code == 200, r.text
    assert r.json()["loaded"] == 6


@pytest.fixture(scope="module")
def server(demo_env: Any, dataset: str) -> Any:
    from tests.support import serve

    with serve(demo_env, issuer="http://testserver") as base:  # the issuer of token()
        yield base


def _chunks(header: list[str], rows: Any, size: int = 8192) -> Any:
    buffer = ",".join(header) + "\n"
    for r in rows:
        buffer += ",".join(r) + "\n"
        if len(buffer) >= size:
            yield buffer.encode()
            buffer = ""
    yield buffer.encode()


def test_a_streamed_upload_through_a_real_server(server: str, demo_env: Any, dataset: str) -> None:
    """The body arrives in many chunks (chunked transfer) and is loaded as it comes; a load
    refused at its header while megabytes are still on their way answers at once, and the
    server goes on serving."""
    import httpx

    headers = {"Authorization": f"Bearer {token(demo_env, ['admin'])}", "Content-Type": "text/csv"}
    url = f"{server}/admin/data/{dataset}/load"
    r = httpx.post(url, content=_chunks(CHARGER_HEADER, charger_rows(30_000, 50_000)), headers=headers,
                   params={"mode": "replace"}, timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["loaded"] == 30_000 and r.json()["row_count"] == 30_000
    bad = _chunks(["colour", *CHARGER_HEADER[1:]], charger_rows(60_000, 90_000))  # ~6 MB after a bad header
    r = httpx.post(url, content=bad, headers=headers, timeout=120)
    assert r.status_code == 400 and "unknown column 'colour'" in r.json()["errors"][0]["message"]
    r = httpx.post(
        url, content=_chunks(CHARGER_HEADER, charger_rows(5, 200_000)), headers=headers, timeout=60
    )
    assert r.status_code == 200 and r.json()["row_count"] == 30_005


def test_the_sync_scheduler_is_off_unless_asked(demo_env: Any) -> None:
    from starlette.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(demo_env.settings)) as off:
        assert off.app.state.sync is None
    app = create_app(demo_env.settings.with_(sync=True))
    with TestClient(app) as on:
        assert on.app.state.sync is not None and on.app.state.sync.running
    assert not app.state.sync.running  # stopped with the app
