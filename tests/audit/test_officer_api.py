"""The officer API on SQLite and PostgreSQL: N mixed requests → exactly N events with the right
decisions; search by dataset/field/department; detail with opened variables; CSV (BOM) and JSON
export; statistics; chain verification; 401 without a token, 403 without audit:read; and the
officer's own calls are audited too."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import gql


@pytest.fixture(scope="module")
def officer(client: Any, demo_env: Any) -> str:
    from gateway.db import create_engine
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str]:
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
    return r.json()["access_token"]


def api(client: Any, path: str, token: str | None, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(f"/audit/api/{path}", params=params, headers=headers)


def since() -> str:
    return datetime.now(UTC).isoformat()


POPULATION = "query P($first: Int) { population(first: $first) { edges { node { idNumber name } } } }"


def test_mixed_requests_make_exactly_one_event_each(
    client: Any, tokens: dict[str, str], officer: str
) -> None:
    start = since()
    before = api(client, "events", officer, **{"from": start})
    assert before.status_code == 200, before.text
    base = before.json()["total"]  # the officer's own call above lands after this count
    tag = uuid.uuid4().hex[:8]
    sent = [
        (
            "hrss",
            gql(
                client,
                "share",
                POPULATION,
                token=tokens["hrss"],
                variables={"first": 2},
                headers={"X-Request-ID": f"hrss-{tag}-1"},
            ),
        ),
        (
            "samr",
            gql(
                client,
                "share",
                POPULATION,
                token=tokens["samr"],
                variables={"first": 2},
                headers={"X-Request-ID": f"samr-{tag}-1"},
            ),
        ),
        (
            "open",
            gql(
                client,
                "open",
                "{ enterpriseRegistration(first: 1) { totalCount } }",
                headers={"X-Request-ID": f"open-{tag}-1"},
            ),
        ),
        ("anon", gql(client, "share", "{ __typename }", headers={"X-Request-ID": f"anon-{tag}-1"})),
        ("bad", gql(client, "open", "{ nope }", headers={"X-Request-ID": f"bad-{tag}-1"})),
    ]
    assert [r.status_code for _, r in sent] == [200, 200, 200, 401, 400]
    page = api(client, "events", officer, **{"from": start, "limit": 50}).json()
    # base + the first officer call + the five requests (this call is recorded after it answers)
    assert page["total"] == base + 1 + len(sent)
    mine = {e["request_id"]: e for e in page["events"] if tag in e["request_id"]}
    assert len(mine) == len(sent)

    hrss, samr = mine[f"hrss-{tag}-1"], mine[f"samr-{tag}-1"]
    assert hrss["department"] == "hrss" and hrss["tier"] == "share" and hrss["status"] == 200
    hrss_fields = {f["field"]: f["action"] for f in hrss["fields"]}
    assert hrss_fields["name"] == "allow"
    assert hrss_fields["id_number"] in ("deny", "encrypt")  # encrypt once hrss has a registered key
    assert hrss["purposes"] == ["社保待遇资格认证"] and hrss["grant_ids"]
    assert hrss["has_variables"] is True
    assert {f["action"] for f in samr["fields"]} == {"deny"}
    assert "FORBIDDEN_FIELD" in samr["error_codes"]
    assert mine[f"anon-{tag}-1"]["status"] == 401 and mine[f"anon-{tag}-1"]["principal_kind"] == "anonymous"
    assert mine[f"bad-{tag}-1"]["status"] == 400
    assert mine[f"open-{tag}-1"]["principal_kind"] == "anonymous"

    # "every access to population.idNumber by hrss": the search index finds exactly the hrss one
    found = api(
        client, "events", officer, **{"from": start, "field": "population.idNumber", "department": "hrss"}
    ).json()
    assert [e["request_id"] for e in found["events"]] == [f"hrss-{tag}-1"]
    denied = api(
        client,
        "events",
        officer,
        **{"from": start, "dataset": "population", "decision": "deny", "department": "samr"},
    ).json()
    assert [e["request_id"] for e in denied["events"]] == [f"samr-{tag}-1"]

    # detail opens the sealed variables for the officer
    doc = api(client, f"events/{hrss['seq']}", officer).json()
    assert doc["variables"] == {"first": 2}

    # the officer's calls are audited, on their own tier
    audits = api(client, "events", officer, **{"from": start, "tier": "audit"}).json()["events"]
    assert {e["operation_name"] for e in audits} >= {"search", "detail"}
    assert all(e["department"] == "police" for e in audits)


def test_export_csv_has_a_bom_and_json_parses(client: Any, tokens: dict[str, str], officer: str) -> None:
    start = since()
    tag = uuid.uuid4().hex[:8]
    gql(
        client,
        "share",
        POPULATION,
        token=tokens["hrss"],
        variables={"first": 1},
        headers={"X-Request-ID": f"exp-{tag}"},
    )
    r = api(client, "export", officer, **{"from": start, "department": "hrss", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row["request_id"] for row in rows] == [f"exp-{tag}"]
    assert "population.id_number:" in rows[0]["fields"] and rows[0]["purposes"] == "社保待遇资格认证"
    assert "variables" not in r.text  # sealed variables are never exported
    j = api(client, "export", officer, **{"from": start, "department": "hrss", "format": "json"})
    assert [e["request_id"] for e in j.json()["events"]] == [f"exp-{tag}"]


def test_stats_and_verify(client: Any, tokens: dict[str, str], officer: str) -> None:
    start = since()
    gql(client, "share", POPULATION, token=tokens["samr"])
    s = api(client, "stats", officer, **{"from": start}).json()
    samr = next(d for d in s["departments"] if d["department"] == "samr")
    assert samr["events"] >= 1 and samr["refused"] >= 1
    pop = next(d for d in s["datasets"] if d["dataset"] == "population")
    assert pop["events_by_decision"]["deny"] >= 1
    v = api(client, "verify", officer).json()
    assert v["ok"] is True and v["events_checked"] > 0


def test_tokens_without_audit_read_are_refused(client: Any, tokens: dict[str, str]) -> None:
    for path in ("events", "events/1", "stats", "export", "verify"):
        r = api(client, path, tokens["hrss"])
        assert r.status_code == 403, (path, r.text)
        assert 'scope="audit:read"' in r.headers["www-authenticate"]
        assert api(client, path, None).status_code == 401
        assert api(client, path, "not-a-token").status_code == 401


def test_bad_filters_are_400(client: Any, officer: str) -> None:
    assert api(client, "events", officer, **{"from": "yesterday"}).status_code == 400
    assert api(client, "events", officer, decision="maybe").status_code == 400
    assert api(client, "export", officer, format="xml").status_code == 400


def test_the_page_and_its_assets_are_served_without_a_cdn(client: Any) -> None:
    page = client.get("/audit")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text
    js = client.get("/audit/static/audit.js")
    assert js.status_code == 200 and "/audit/api/events" in js.text
    assert client.get("/audit/static/../app.py").status_code == 404


def test_csv_cells_cannot_become_spreadsheet_formulas(
    client: Any, tokens: dict[str, str], officer: str
) -> None:
    """A request id (the caller's X-Request-ID) starting with "-" is exported with a leading
    apostrophe, so Excel/WPS show it as text; the JSON export keeps the exact value."""
    from gateway.audit.query import _cell

    assert [_cell(v) for v in ("=1+1", "+1", "@SUM(A1)", "\tx", "plain", 5, -3, None)] == [
        "'=1+1",
        "'+1",
        "'@SUM(A1)",
        "'\tx",
        "plain",
        5,
        -3,
        "",
    ]
    start, request_id = since(), f"-exp-{uuid.uuid4().hex[:8]}"
    gql(
        client,
        "share",
        POPULATION,
        token=tokens["hrss"],
        variables={"first": 1},
        headers={"X-Request-ID": request_id},
    )
    r = api(client, "export", officer, **{"from": start, "department": "hrss", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row["request_id"] for row in rows] == ["'" + request_id]
    j = api(client, "export", officer, **{"from": start, "department": "hrss", "format": "json"})
    assert [e["request_id"] for e in j.json()["events"]] == [request_id]


def test_the_export_is_signed_and_bounded(
    client: Any, tokens: dict[str, str], officer: str, demo_env: Any
) -> None:
    """An export over HTTP is an RFC 9421 SM2-signed response: it verifies with the gateway's
    public key alone, also as a saved file beside its detached signature, and fails once a byte
    of it changes. Over SHUQIAO_AUDIT_EXPORT_MAX_EVENTS it is refused with 413 before any work."""
    from dataclasses import replace

    from starlette.testclient import TestClient

    from gateway.app import create_app
    from gateway.audit.checkpoints import store_lookup
    from gateway.crypto.signing import detached_signature, open_signing_store
    from keys.errors import SignatureError
    from keys.rfc9421 import verify_response

    start = since()
    gql(client, "share", POPULATION, token=tokens["hrss"], variables={"first": 1})
    r = api(client, "export", officer, **{"from": start, "department": "hrss", "format": "csv"})
    assert r.status_code == 200 and "signature" in r.headers and "content-digest" in r.headers
    lookup = store_lookup(open_signing_store(demo_env.settings.var_dir, create=False))
    headers = {k.lower(): v for k, v in r.headers.items()}
    assert verify_response(200, headers, r.content, lookup).keyid
    # as files: the body as saved, the detached signature as the page and the CLI write it
    from gateway.crypto.cli import parse_http_response

    status, saved, rest = parse_http_response(detached_signature(r.status_code, headers))
    assert (status, rest) == (200, b"") and verify_response(status, saved, r.content, lookup)
    with pytest.raises(SignatureError, match="Content-Digest"):
        verify_response(status, saved, r.content.replace(b"hrss", b"hrsS", 1), lookup)

    small = replace(demo_env.settings, audit_export_max_events=1)
    with TestClient(create_app(small)) as c:
        r = c.get(
            "/audit/api/export", params={"from": "2000-01-01"}, headers={"Authorization": f"Bearer {officer}"}
        )
    assert r.status_code == 413, r.text
    assert r.json()["errors"][0]["extensions"]["code"] == "EXPORT_TOO_LARGE"
    assert "shuqiao audit export" in r.json()["errors"][0]["message"]
