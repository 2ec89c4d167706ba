"""An enterprise's keys, grants, usage and applications on `POST /admin/graphql` (the machine twin
of /enterprise), with real tokens (authorization code + PKCE for people), on SQLite and
PostgreSQL. The story: a new enterprise's key is refused tax_credit_rating (FORBIDDEN); its user
makes a key (the secret once), applies; police's steward may not decide, tax's steward approves;
the key reads the dataset; usage counts the calls; rotated, the new key works; revoked, refused.
Ownership on every call: another enterprise's user, a department's developer get NOT_FOUND /
FORBIDDEN. Every key change and application step is an audit event without the secret."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from gateway.cli import app as cli_app
from gateway.identity.clients import create_client, ensure_enterprise
from gateway.identity.users import UserService
from tests.conftest import gql
from tests.identity.conftest import hasher
from tests.support import on_db
from tests.workflow.test_admin_graphql import admin, person_token

TAX = "{ taxCreditRating(first: 3) { totalCount edges { node { creditCode taxpayerName rating } } } }"
PASSWORD = "correct horse battery staple"
UNTIL = (datetime.now(UTC) + timedelta(days=180)).date().isoformat()
CREATE_KEY = (
    "mutation($n: String!, $ds: [String!], $e: Int) { createApiKey(name: $n, datasets: $ds, expiresDays: $e) "
    "{ apiKey key { prefix state datasets enterprise } } }"
)
APPLY = (
    "mutation($input: CreateApplicationInput!) { createApplication(input: $input) "
    "{ id tier state consumer provider fields { name treatment } nextSteps } }"
)


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def _until(check: Callable[[], Any], seconds: float = 4.0) -> Any:
    """Poll: the open tier follows a grant within its catalogue poll, a revoked key within the
    key cache's two seconds."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def _open(client: Any, key: str) -> Any:
    return gql(client, "open", TAX, headers={"X-API-Key": key})


def _enterprise(demo_env: Any) -> tuple[str, str]:
    """A new enterprise (no grant) and its user; (enterprise code, username)."""
    code = f"ent-{secrets.token_hex(3)}"
    username = f"{code}-dev"

    async def go(engine: Any) -> None:
        await ensure_enterprise(engine, code, f"测试企业 {code}", None)
        await UserService(engine).create(username, PASSWORD, roles=["enterprise_user"], enterprise=code)

    on_db(demo_env, go)
    return code, username


@pytest.fixture(scope="module")
def web_app(demo_env: Any) -> dict[str, str]:
    """An authorization-code client people sign in through (as the web pages' client does)."""
    cid = f"ent-pages-{secrets.token_hex(3)}"
    _, secret = on_db(
        demo_env,
        lambda e: create_client(
            e,
            hasher(demo_env),
            "tax",
            client_id=cid,
            scopes=["share:read", "grants:approve", "enterprise"],
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=["http://127.0.0.1:9/callback"],
        ),
    )
    return {"client_id": cid, "client_secret": secret or ""}


@pytest.fixture(scope="module")
def stewards(client: Any, demo_env: Any, web_app: dict[str, str]) -> dict[str, str]:
    """tax's steward (made here) and police's (the demo's)."""
    name = f"tax-steward-{secrets.token_hex(3)}"
    on_db(demo_env, lambda e: UserService(e).create(name, PASSWORD, roles=["steward"], department="tax"))
    police = demo_env.credentials["users"]["police-steward"]["password"]
    scope = "openid share:read grants:approve"
    return {
        "tax": person_token(client, web_app, name, PASSWORD, scope),
        "police": person_token(client, web_app, "police-steward", police, scope),
    }


def _person(client: Any, web_app: dict[str, str], username: str) -> str:
    return person_token(client, web_app, username, PASSWORD, "openid enterprise")


def test_a_token_of_an_enterprise_user_carries_the_enterprise_scope_only(
    client: Any, demo_env: Any, web_app: dict[str, str]
) -> None:
    _, user = _enterprise(demo_env)
    token = person_token(client, web_app, user, PASSWORD, "share:read enterprise grants:approve")
    r = client.post(
        "/oauth/introspect", data={"token": token}, auth=(web_app["client_id"], web_app["client_secret"])
    )
    assert r.json()["scope"].split() == ["enterprise"]
    # an admin-audience token, not the share tier's: refused there
    assert gql(client, "share", "{ __typename }", token=token).status_code == 401


def test_the_story_key_apply_approve_read_usage_rotate_revoke(
    client: Any, demo_env: Any, web_app: dict[str, str], stewards: dict[str, str]
) -> None:
    ent, user = _enterprise(demo_env)
    token = _person(client, web_app, user)
    me = admin(client, token, "{ myEnterprise { code user } }").json()
    assert me["data"]["myEnterprise"] == {"code": ent, "user": user}

    # a key, its secret once; listing never shows it
    made = admin(client, token, CREATE_KEY, {"n": "生产"}).json()
    assert "errors" not in made, made
    key = made["data"]["createApiKey"]["apiKey"]
    prefix = made["data"]["createApiKey"]["key"]["prefix"]
    assert key.startswith(f"sq_{prefix}_") and made["data"]["createApiKey"]["key"]["enterprise"] == ent
    listed = admin(client, token, "{ apiKeys { prefix state name } }")
    assert listed.json()["data"]["apiKeys"] == [{"prefix": prefix, "state": "active", "name": "生产"}]
    assert key.split("_", 2)[2] not in listed.text

    # before: the conditional dataset is FORBIDDEN to the key
    before = _open(client, key).json()
    assert _codes(before) == ["FORBIDDEN"] and "610000-TAX-000001" in before["errors"][0]["message"]

    # a key cannot be scoped to a dataset not granted
    refused = admin(client, token, CREATE_KEY, {"n": "x", "ds": ["tax_credit_rating"]}).json()
    assert _codes(refused) == ["BAD_USER_INPUT"] and "holds no grant" in refused["errors"][0]["message"]

    # apply: only 有条件开放 datasets are offered, with their resource codes
    offered = admin(
        client, token, '{ applicableDatasets(tier: "open") { code resourceCode provider } }'
    ).json()
    assert offered["data"]["applicableDatasets"] == [
        {"code": "tax_credit_rating", "resourceCode": "610000-TAX-000001", "provider": "tax"}
    ]
    payload = {
        "tier": "open",
        "dataset": "tax_credit_rating",
        "fields": [{"name": "creditCode"}, {"name": "taxpayer_name"}, {"name": "rating"}],
        "purpose": "小微企业信用贷款授信审查",
        "legalBasis": "授权运营协议",
        "periodEnd": UNTIL,
        "submit": True,
    }
    applied = admin(client, token, APPLY, {"input": payload}).json()
    assert "errors" not in applied, applied
    app = applied["data"]["createApplication"]
    assert (app["tier"], app["state"], app["consumer"], app["provider"]) == ("open", "submitted", ent, "tax")
    assert app["nextSteps"] == ["withdraw"]

    # police's steward neither sees nor decides it; the applicant cannot approve it either
    pending = admin(client, stewards["police"], "{ pendingApprovals { id } }").json()
    assert app["id"] not in [p["id"] for p in pending["data"]["pendingApprovals"]]
    approve = "mutation($id: Int!) { approveApplication(id: $id) { state grantId } }"
    for who in (stewards["police"], token):
        assert _codes(admin(client, who, approve, {"id": app["id"]}).json()) == ["FORBIDDEN"]

    # tax's steward sees it waiting and approves; the grant is the enterprise's
    pending = admin(client, stewards["tax"], "{ pendingApprovals { id consumer tier } }").json()
    assert {"id": app["id"], "consumer": ent, "tier": "open"} in pending["data"]["pendingApprovals"]
    ok = admin(client, stewards["tax"], approve, {"id": app["id"]}).json()
    assert ok["data"]["approveApplication"]["state"] == "approved", ok
    grants = admin(
        client, token, '{ grants(state: "all") { id dataset consumer state applicationId } }'
    ).json()
    assert grants["data"]["grants"] == [
        {
            "id": ok["data"]["approveApplication"]["grantId"],
            "dataset": "tax_credit_rating",
            "consumer": ent,
            "state": "active",
            "applicationId": app["id"],
        }
    ]

    # after: the key reads the dataset, only the fields applied for
    def reads() -> Any:
        body = _open(client, key).json()
        return body if not body.get("errors") else None

    body = _until(reads)
    assert body, _open(client, key).text
    assert body["data"]["taxCreditRating"]["totalCount"] > 0
    node = body["data"]["taxCreditRating"]["edges"][0]["node"]
    assert node["creditCode"] and node["taxpayerName"] and node["rating"]

    # usage: today's calls of this key from the audit log, against its quota
    usage = admin(client, token, "{ usage(days: 3) { from to keys total } }").json()["data"]["usage"]
    [row] = usage["keys"]
    assert row["prefix"] == prefix and row["callsToday"] >= 2 and row["days"][-1]["refused"] >= 1
    assert row["remainingToday"] == row["dailyQuota"] - row["callsToday"] and len(row["days"]) == 3

    # rotate: a new secret, the old key works through the overlap
    rotated = admin(
        client,
        token,
        "mutation($p: String!) { rotateApiKey(prefix: $p, overlapHours: 1) "
        "{ apiKey key { prefix } previous { prefix replacedBy expiresAt } } }",
        {"p": prefix},
    ).json()["data"]["rotateApiKey"]
    new_key = rotated["apiKey"]
    assert rotated["previous"]["replacedBy"] == rotated["key"]["prefix"] != prefix
    assert reads() and _until(lambda: not _open(client, new_key).json().get("errors"))

    # revoke both: refused within the key cache's lifetime
    for p in (prefix, rotated["key"]["prefix"]):
        r = admin(
            client, token, "mutation($p: String!) { revokeApiKey(prefix: $p) { state } }", {"p": p}
        ).json()
        assert r["data"]["revokeApiKey"]["state"] == "revoked"
    for k in (key, new_key):
        assert _until(lambda k=k: _open(client, k).status_code == 401), _open(client, k).text
    again = admin(
        client, token, "mutation($p: String!) { revokeApiKey(prefix: $p) { state } }", {"p": prefix}
    )
    assert _codes(again.json()) == ["CONFLICT"]

    # every change is an audit event naming the person, never the secret
    events = _identity_events(demo_env, ent)
    ops = [e["operation_name"] for e in events]
    for op in (
        "apikey.create",
        "apikey.rotate",
        "apikey.revoke",
        "application.create",
        "application.approve",
    ):
        assert op in ops, ops
    created = next(e for e in events if e["operation_name"] == "apikey.create")
    assert created["principal_id"] == user and created["principal_kind"] == "person"
    text = json.dumps(events, default=str)
    assert key.split("_", 2)[2] not in text and new_key.split("_", 2)[2] not in text


def _identity_events(demo_env: Any, enterprise: str) -> list[dict[str, Any]]:
    from gateway.audit.models import AuditEvent

    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.__table__)
                .where(AuditEvent.tier == "identity", AuditEvent.consumer == enterprise)
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            )
            return [dict(r._mapping) for r in rows]

    return on_db(demo_env, go)


def test_an_enterprise_sees_and_acts_on_its_own_only(
    client: Any, demo_env: Any, web_app: dict[str, str], stewards: dict[str, str]
) -> None:
    ent, user = _enterprise(demo_env)
    _, other_user = _enterprise(demo_env)
    mine, theirs = _person(client, web_app, user), _person(client, web_app, other_user)
    prefix = admin(client, mine, CREATE_KEY, {"n": "a"}).json()["data"]["createApiKey"]["key"]["prefix"]
    payload = {
        "tier": "open",
        "dataset": "tax_credit_rating",
        "fields": [{"name": "rating"}],
        "purpose": "授信",
        "legalBasis": "协议",
        "periodEnd": UNTIL,
        "submit": True,
    }
    app_id = admin(client, mine, APPLY, {"input": payload}).json()["data"]["createApplication"]["id"]

    # the other enterprise: the key is "not found" (not "not yours"), the application not its
    for mutation in (
        "mutation($p: String!) { revokeApiKey(prefix: $p) { state } }",
        "mutation($p: String!) { rotateApiKey(prefix: $p) { apiKey } }",
    ):
        assert _codes(admin(client, theirs, mutation, {"p": prefix}).json()) == ["NOT_FOUND"]
    assert prefix not in admin(client, theirs, "{ apiKeys { prefix } }").text
    assert _codes(
        admin(client, theirs, "{ apiKeys(enterprise: $e) { prefix } }".replace("$e", f'"{ent}"')).json()
    ) == ["FORBIDDEN"]
    assert _codes(admin(client, theirs, "{ usage(enterprise: " + json.dumps(ent) + ") { to } }").json()) == [
        "FORBIDDEN"
    ]
    shown = admin(client, theirs, "query($id: Int!) { application(id: $id) { id } }", {"id": app_id}).json()
    assert _codes(shown) == ["FORBIDDEN"]
    withdraw = "mutation($id: Int!) { withdrawApplication(id: $id) { state } }"
    assert _codes(admin(client, theirs, withdraw, {"id": app_id}).json()) == ["FORBIDDEN"]
    assert admin(client, theirs, "{ myApplications { id } }").json()["data"]["myApplications"] == []
    # nor apply in the other's name, nor on the share tier
    for extra in (
        {"consumer": ent},
        {"tier": "share", "dataset": "population", "fields": [{"name": "name"}]},
    ):
        refused = admin(client, theirs, APPLY, {"input": {**payload, **extra}}).json()
        assert _codes(refused) in (["FORBIDDEN"], ["BAD_USER_INPUT"]), refused

    # an enterprise's user reaches nothing of the departments' workflow
    for query in ("{ kpis { asOf } }", "{ demands { id } }", "{ qualityReports { id } }"):
        assert _codes(admin(client, mine, query).json()) == ["FORBIDDEN"], query

    # a department's people have no enterprise: no keys to list (FORBIDDEN), no page
    assert _codes(admin(client, stewards["tax"], "{ apiKeys { prefix } }").json()) == ["FORBIDDEN"]
    assert _codes(admin(client, stewards["tax"], CREATE_KEY, {"n": "x"}).json()) == ["FORBIDDEN"]

    # the owner still withdraws its own
    assert (
        admin(client, mine, withdraw, {"id": app_id}).json()["data"]["withdrawApplication"]["state"]
        == "withdrawn"
    )


def test_key_requests_are_checked(client: Any, demo_env: Any, web_app: dict[str, str]) -> None:
    _, user = _enterprise(demo_env)
    token = _person(client, web_app, user)
    for bad in ({"n": "x", "e": 0}, {"n": "x", "e": 10_000}):
        assert _codes(admin(client, token, CREATE_KEY, bad).json()) == ["BAD_USER_INPUT"]
    prefixes = []
    for i in range(10):
        body = admin(client, token, CREATE_KEY, {"n": f"k{i}"}).json()
        prefixes.append(body["data"]["createApiKey"]["key"]["prefix"])
    eleventh = admin(client, token, CREATE_KEY, {"n": "k10"}).json()
    assert _codes(eleventh) == ["CONFLICT"] and "revoke one first" in eleventh["errors"][0]["message"]
    rotate = "mutation($p: String!, $h: Float!) { rotateApiKey(prefix: $p, overlapHours: $h) { apiKey } }"
    assert _codes(admin(client, token, rotate, {"p": prefixes[0], "h": 1000}).json()) == ["BAD_USER_INPUT"]


def _cli(demo_env: Any, *args: str) -> Any:
    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    return CliRunner().invoke(cli_app, list(args), env=env)


def test_cli_keys_apply_grants_usage(client: Any, demo_env: Any) -> None:
    ent, _ = _enterprise(demo_env)
    made = _cli(demo_env, "enterprise", "keys", "create", "--as", ent, "--name", "cli", "--json")
    assert made.exit_code == 0, made.output
    doc = json.loads(made.output)
    key, prefix = doc["api_key"], doc["prefix"]
    assert doc["enterprise"] == ent and doc["state"] == "active"
    listed = _cli(demo_env, "enterprise", "keys", "list", "--as", ent, "--json")
    assert [k["prefix"] for k in json.loads(listed.output)] == [prefix] and key not in listed.output

    applied = _cli(
        demo_env, "enterprise", "apply", "--as", ent, "--dataset", "tax_credit_rating",
        "--purpose", "授信审查", "--legal-basis", "授权运营协议", "--until", UNTIL, "--json",
    )  # fmt: skip
    assert applied.exit_code == 0, applied.output
    app = json.loads(applied.output)
    assert (app["tier"], app["state"], app["consumer"]) == ("open", "submitted", ent)
    assert "rating" in app["fields"] and [h["step"] for h in app["history"]] == ["create", "submit"]
    mine = json.loads(_cli(demo_env, "enterprise", "applications", "--as", ent, "--json").output)
    assert [a["id"] for a in mine] == [app["id"]]
    approved = _cli(demo_env, "application", "approve", str(app["id"]), "--as", "tax", "--json")
    assert approved.exit_code == 0, approved.output
    grants = json.loads(_cli(demo_env, "enterprise", "grants", "--as", ent, "--json").output)
    assert [(g["dataset"], g["state"]) for g in grants] == [("tax_credit_rating", "active")]

    assert _until(lambda: not _open(client, key).json().get("errors"))
    usage = json.loads(_cli(demo_env, "enterprise", "usage", "--as", ent, "--days", "2", "--json").output)
    assert usage["keys"][0]["prefix"] == prefix and usage["keys"][0]["calls_today"] >= 1

    other, _ = _enterprise(demo_env)
    refused = _cli(demo_env, "enterprise", "keys", "revoke", prefix, "--as", other)
    assert refused.exit_code == 2 and "no API key" in refused.output
    rotated = json.loads(_cli(demo_env, "enterprise", "keys", "rotate", prefix, "--as", ent, "--json").output)
    assert rotated["previous"]["replaced_by"] == rotated["prefix"]
    revoked = _cli(demo_env, "enterprise", "keys", "revoke", rotated["prefix"], "--as", ent, "--json")
    assert json.loads(revoked.output)["state"] == "revoked"
    assert _cli(demo_env, "enterprise", "keys", "list", "--as", "nosuch").exit_code == 2


def test_usage_days_are_china_standard_time_calendar_days() -> None:
    from gateway.enterprise.service import _days

    # 01:30 on 3 December in Beijing is still 2 December in UTC
    days = _days(2, datetime(2026, 12, 2, 17, 30, tzinfo=UTC))
    assert [d[0] for d in days] == ["2026-12-02", "2026-12-03"]
    assert days[1][1] == datetime(2026, 12, 2, 16, 0, tzinfo=UTC)
    assert days[1][2] == datetime(2026, 12, 3, 16, 0, tzinfo=UTC) and days[0][2] == days[1][1]
