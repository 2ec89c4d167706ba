"""One JSON line per request on `shuqiao.http`, with who and how it went, and never a secret or a
value: through the app on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from tests.conftest import gql

FIELDS = {
    "request_id",
    "method",
    "route",
    "tier",
    "principal_kind",
    "principal",
    "status",
    "code",
    "duration_ms",
    "bytes",
}
VARIABLE_VALUE = "张变量VALUE-7e1f"
GET_VARIABLE_VALUE = "雁塔区VALUE-93ab"
WRONG_SECRET = "WRONG-SECRET-5c0d-hunter2"
FORGED_TOKEN = "eyJforged.bearer.TOKEN-a41c"
PASSWORD = "Pa55word-SENTINEL-e09b"


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} in page"
    return m.group(1).replace("&amp;", "&")


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "shuqiao.http"]


def _one(lines: list[dict[str, Any]], response: Any) -> dict[str, Any]:
    rid = response.headers["x-request-id"]
    mine = [line for line in lines if line["request_id"] == rid]
    assert len(mine) == 1, (rid, lines)
    assert mine[0].keys() >= FIELDS
    return mine[0]


@pytest.fixture(scope="module")
def run(client: Any, demo_env: Any, tokens: dict[str, str]) -> Any:
    """Several requests, each with something that must not be logged, and what they logged."""
    hrss = demo_env.credentials["clients"]["hrss"]
    api_key = demo_env.credentials["api_keys"]["demo-bank"]
    caplog_records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caplog_records.append(record)

    handler = Keep(level=logging.INFO)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        responses = {
            "token": client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(hrss["client_id"], hrss["client_secret"]),
            ),
            "wrong_secret": client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(hrss["client_id"], WRONG_SECRET),
            ),
            "share": gql(
                client,
                "share",
                "query($n: String) { population(first: 1, where: {name: {eq: $n}}) { totalCount } }",
                token=tokens["hrss"],
                variables={"n": VARIABLE_VALUE},
            ),
            "forged": gql(client, "share", "{ population { totalCount } }", token=FORGED_TOKEN),
            "open_get": client.get(
                "/open/graphql",
                params={
                    "query": "query($d: String) { enterpriseRegistration(first: 1, "
                    "where: {district: {eq: $d}}) { totalCount } }",
                    "variables": json.dumps({"d": GET_VARIABLE_VALUE}),
                },
                headers={"X-API-Key": api_key},
            ),
            "subgraph": client.get(
                "/share/subgraphs/hrss.graphql", headers={"Authorization": f"Bearer {tokens['hrss']}"}
            ),
            "unmatched": client.get("/no/such/path-8d2e"),
        }
        page = client.get("/oauth/login")
        responses["login_page"] = page
        responses["login"] = client.post(
            "/oauth/login",
            data={
                "username": "nobody-8d2e",
                "password": PASSWORD,
                "csrf": _field(page.text, "csrf"),
                "next": "",
            },
            follow_redirects=False,
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    secrets = {
        "client secret": hrss["client_secret"],
        "wrong secret": WRONG_SECRET,
        "api key": api_key,
        "bearer token": tokens["hrss"],
        "issued token": responses["token"].json()["access_token"],
        "forged token": FORGED_TOKEN,
        "password": PASSWORD,
        "variable": VARIABLE_VALUE,
        "GET variable": GET_VARIABLE_VALUE,
    }
    lines = [json.loads(r.getMessage()) for r in caplog_records if r.name == "shuqiao.http"]
    return responses, lines, caplog_records, secrets, hrss, api_key


def test_one_line_per_request_with_its_facts(run: Any) -> None:
    responses, lines, _, _, hrss, api_key = run
    assert len(lines) == len(responses)
    for r in responses.values():
        _one(lines, r)

    share = _one(lines, responses["share"])
    assert share["method"] == "POST" and share["route"] == "/share/graphql" and share["tier"] == "share"
    assert share["status"] == responses["share"].status_code
    assert (share["principal_kind"], share["principal"]) == ("department", hrss["client_id"])
    assert share["bytes"] == len(responses["share"].content) and share["duration_ms"] > 0

    token = _one(lines, responses["token"])
    assert token["tier"] == "identity" and token["route"] == "/oauth/token" and token["status"] == 200
    assert token["principal"] == hrss["client_id"]

    wrong = _one(lines, responses["wrong_secret"])
    assert wrong["status"] == 401 and wrong["code"] == "invalid_client"
    assert wrong["principal"] is None  # a claimed id is not a principal

    forged = _one(lines, responses["forged"])
    assert (forged["status"], forged["code"]) == (401, "UNAUTHENTICATED")

    open_get = _one(lines, responses["open_get"])
    assert open_get["method"] == "GET" and open_get["tier"] == "open" and open_get["status"] == 200
    assert open_get["principal_kind"] == "enterprise"
    assert open_get["principal"] in api_key and open_get["principal"] != api_key  # its prefix

    login = _one(lines, responses["login"])
    assert (login["route"], login["status"], login["principal"]) == ("/oauth/login", 401, None)

    sub = _one(lines, responses["subgraph"])
    assert sub["route"] == "/share/subgraphs/{department}.graphql"

    missing = _one(lines, responses["unmatched"])
    assert (missing["status"], missing["route"], missing["tier"]) == (404, "(unmatched)", "other")
    assert "path-8d2e" not in json.dumps(missing)


def test_no_token_key_password_or_value_in_any_log_record(run: Any) -> None:
    _, _, records, secrets, _, _ = run
    assert records
    for record in records:
        if record.name.startswith("httpx"):
            continue  # the test's own HTTP client, which logs the URLs it asks for
        text = record.getMessage() + (record.exc_text or "") + repr(getattr(record, "args", ""))
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in a {record.name} log record"
