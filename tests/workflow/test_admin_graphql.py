"""POST /admin/graphql through the HTTP app with real tokens (client credentials for systems, the
authorization-code flow with PKCE for people), on SQLite and PostgreSQL. The story: hrss is
refused population.phone (FORBIDDEN_FIELD), applies, a samr steward cannot approve, police's
steward approves it narrowed to masked, the next share-tier request returns it masked; revoked,
the next request is refused again. Department checks on every resolver; every call audited."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway.identity.clients import create_client
from gateway.identity.users import UserService
from tests.conftest import gql
from tests.identity.conftest import hasher
from tests.support import on_db

REDIRECT = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery staple"
PHONE = "{ population(first: 3) { edges { node { name phone } } } }"
APP_FIELDS = "id state consumer provider dataset fields { name treatment } grantId decisionReason nextSteps"
UNTIL = (datetime.now(UTC) + timedelta(days=180)).date().isoformat()


def admin(client: Any, token: str | None, query: str, variables: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/admin/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} in page"
    return m.group(1).replace("&amp;", "&")


def person_token(client: Any, app: dict[str, str], username: str, password: str, scope: str) -> str:
    """Sign in through /oauth/authorize, consent, exchange the code (PKCE) for an access token."""
    client.cookies.clear()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": app["client_id"],
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    authorize = client.build_request("GET", "/oauth/authorize", params=params).url
    next_url = f"{authorize.path}?{authorize.query.decode()}"
    page = client.get("/oauth/login", params={"next": next_url})
    r = client.post(
        "/oauth/login",
        data={
            "username": username,
            "password": password,
            "csrf": _field(page.text, "csrf"),
            "next": next_url,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    consent = client.get(next_url, follow_redirects=False)
    if consent.status_code == 200:
        consent = client.post(
            next_url,
            data={"csrf": _field(consent.text, "csrf"), "decision": "approve"},
            follow_redirects=False,
        )
    assert consent.status_code == 303, consent.text
    code = re.search(r"code=([^&]+)", consent.headers["location"]).group(1)  # type: ignore[union-attr]
    token = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(app["client_id"], app["client_secret"]),
    )
    assert token.status_code == 200, token.text
    client.cookies.clear()
    return str(token.json()["access_token"])


@pytest.fixture(scope="module")
def people(client: Any, demo_env: Any) -> dict[str, str]:
    """Access tokens: the demo's police steward and hrss developer (people, through a console
    client), a samr steward (made here), and hrss's and samr's systems (client credentials)."""
    cid = f"console-{secrets.token_hex(3)}"
    _, secret = on_db(
        demo_env,
        lambda e: create_client(
            e,
            hasher(demo_env),
            "police",
            client_id=cid,
            scopes=["share:read", "grants:approve"],
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[REDIRECT],
        ),
    )
    app = {"client_id": cid, "client_secret": secret or ""}
    samr_steward = f"samr-steward-{secrets.token_hex(3)}"
    on_db(
        demo_env,
        lambda e: UserService(e).create(samr_steward, PASSWORD, roles=["steward"], department="samr"),
    )
    users = demo_env.credentials["users"]
    scope = "openid share:read grants:approve"
    out = {
        "police_steward": person_token(
            client, app, "police-steward", users["police-steward"]["password"], scope
        ),
        "hrss_dev": person_token(
            client, app, "hrss-developer", users["hrss-developer"]["password"], "share:read"
        ),
        "samr_steward": person_token(client, app, samr_steward, PASSWORD, scope),
    }
    for dept in ("hrss", "samr"):
        c = demo_env.credentials["clients"][dept]
        r = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(c["client_id"], c["client_secret"]),
        )
        out[f"{dept}_system"] = r.json()["access_token"]
    return out


CREATE = (
    "mutation($input: CreateApplicationInput!) { createApplication(input: $input) { "
    + APP_FIELDS
    + " history { step actor toState } } }"
)
APPROVE = (
    "mutation($id: Int!, $input: ApproveInput) { approveApplication(id: $id, input: $input) { "
    + APP_FIELDS
    + " approvedFields { name treatment } history { step actor reason changes } } }"
)


def _create(client: Any, token: str, **extra: Any) -> Any:
    payload = {
        "dataset": "population",
        "fields": [{"name": "phone", "treatment": "clear"}],
        "purpose": "社保待遇资格认证：联系参保人",
        "legalBasis": "《社会保险法》",
        "periodEnd": UNTIL,
        "submit": True,
        **extra,
    }
    return admin(client, token, CREATE, {"input": payload})


def test_the_story_apply_approve_narrowed_read_revoke(client: Any, people: dict[str, str]) -> None:
    # hrss is refused the phone number, and told which resource to apply for
    body = gql(client, "share", PHONE, token=people["hrss_system"]).json()
    assert "FORBIDDEN_FIELD" in _codes(body)
    assert all(n["node"]["phone"] is None for n in body["data"]["population"]["edges"])

    # the hrss developer applies (a person, through the authorization-code flow)
    r = _create(client, people["hrss_dev"])
    assert r.status_code == 200, r.text
    made = r.json()["data"]["createApplication"]
    assert made["state"] == "submitted" and made["consumer"] == "hrss" and made["provider"] == "police"
    assert [h["step"] for h in made["history"]] == ["create", "submit"]
    assert made["history"][0]["actor"] == "hrss-developer"
    assert made["nextSteps"] == ["withdraw"]

    # a samr steward cannot approve police's data; nor can the applicant
    for who in ("samr_steward", "hrss_dev", "samr_system"):
        refused = admin(client, people[who], APPROVE, {"id": made["id"]}).json()
        assert _codes(refused) == ["FORBIDDEN"] and refused["data"] is None, who

    # police's steward sees it waiting and approves it narrowed: masked, not clear
    pending = admin(client, people["police_steward"], "{ pendingApprovals { id nextSteps } }").json()
    mine = [p for p in pending["data"]["pendingApprovals"] if p["id"] == made["id"]]
    assert mine and mine[0]["nextSteps"] == ["approve", "reject", "return"]
    wider = admin(
        client,
        people["police_steward"],
        APPROVE,
        {"id": made["id"], "input": {"fields": [{"name": "phone"}, {"name": "name", "treatment": "clear"}]}},
    ).json()
    assert _codes(wider) == ["BAD_USER_INPUT"] and "cannot add field(s) name" in wider["errors"][0]["message"]
    ok = admin(
        client,
        people["police_steward"],
        APPROVE,
        {
            "id": made["id"],
            "input": {"fields": [{"name": "phone", "treatment": "masked"}], "reason": "脱敏即可"},
        },
    ).json()
    assert "errors" not in ok, ok
    done = ok["data"]["approveApplication"]
    assert done["state"] == "approved" and done["approvedFields"] == [
        {"name": "phone", "treatment": "masked"}
    ]
    assert done["history"][-1]["actor"] == "police-steward" and done["history"][-1]["reason"] == "脱敏即可"
    again = admin(client, people["police_steward"], APPROVE, {"id": made["id"]}).json()
    assert _codes(again) == ["CONFLICT"]

    # the very next share-tier request returns the phone, masked as approved
    body = gql(client, "share", PHONE, token=people["hrss_system"]).json()
    assert "errors" not in body, body
    phones = [e["node"]["phone"] for e in body["data"]["population"]["edges"] if e["node"]["phone"]]
    assert phones and all(re.fullmatch(r"1\d{2}\*{4}\d{4}", p) for p in phones)
    assert all(
        "*" not in e["node"]["name"] for e in body["data"]["population"]["edges"]
    )  # its other grant adds

    # grants: hrss sees its own, police's steward those on population, samr none of them
    q = "{ grants { id consumer dataset fields clearFields state applicationId } }"
    hrss_grants = admin(client, people["hrss_system"], q).json()["data"]["grants"]
    assert any(g["id"] == done["grantId"] and g["applicationId"] == made["id"] for g in hrss_grants)
    assert all(g["consumer"] == "hrss" for g in hrss_grants)
    police_grants = admin(client, people["police_steward"], q).json()["data"]["grants"]
    assert any(g["id"] == done["grantId"] for g in police_grants)
    samr_grants = admin(client, people["samr_steward"], q).json()["data"]["grants"]
    assert all(g["consumer"] == "samr" or g["dataset"] in ("enterprise_registration",) for g in samr_grants)
    assert done["grantId"] not in [g["id"] for g in samr_grants]

    # samr cannot revoke or renew it; hrss may give it up but not renew it
    revoke = "mutation($id: Int!, $r: String!) { revokeGrant(id: $id, reason: $r) { id state revokedBy } }"
    renew = "mutation($id: Int!, $u: String!) { renewGrant(id: $id, until: $u) { id expiresAt } }"
    assert _codes(
        admin(client, people["samr_steward"], revoke, {"id": done["grantId"], "r": "x"}).json()
    ) == ["FORBIDDEN"]
    far = (datetime.now(UTC) + timedelta(days=400)).date().isoformat()
    assert _codes(admin(client, people["hrss_dev"], renew, {"id": done["grantId"], "u": far}).json()) == [
        "FORBIDDEN"
    ]
    renewed = admin(client, people["police_steward"], renew, {"id": done["grantId"], "u": far}).json()
    assert "errors" not in renewed and renewed["data"]["renewGrant"]["expiresAt"] > UNTIL

    # police revokes: the next request is refused again
    out = admin(client, people["police_steward"], revoke, {"id": done["grantId"], "r": "核验结束"}).json()
    assert out["data"]["revokeGrant"]["state"] == "revoked"
    assert out["data"]["revokeGrant"]["revokedBy"] == "police-steward"
    body = gql(client, "share", PHONE, token=people["hrss_system"]).json()
    assert "FORBIDDEN_FIELD" in _codes(body)
    twice = admin(client, people["police_steward"], revoke, {"id": done["grantId"], "r": "again"}).json()
    assert _codes(twice) == ["CONFLICT"]


def test_departments_see_only_their_own(client: Any, people: dict[str, str]) -> None:
    made = _create(client, people["hrss_system"]).json()["data"]["createApplication"]  # a system applies
    one = "query($id: Int!) { application(id: $id) { id state history { step actor } } }"
    for who in ("samr_system", "samr_steward"):
        assert _codes(admin(client, people[who], one, {"id": made["id"]}).json()) == ["FORBIDDEN"]
    seen = admin(client, people["police_steward"], one, {"id": made["id"]}).json()["data"]["application"]
    assert seen["history"][0]["actor"].startswith("demo-hrss")
    assert _codes(admin(client, people["hrss_system"], one, {"id": 10**8}).json()) == ["NOT_FOUND"]
    samr_list = admin(
        client, people["samr_system"], "{ myApplications { consumer } applications { consumer } }"
    )
    data = samr_list.json()["data"]
    assert all(a["consumer"] == "samr" for a in data["myApplications"] + data["applications"])
    assert (
        admin(client, people["samr_steward"], "{ pendingApprovals { provider } }").json()["data"][
            "pendingApprovals"
        ]
        == []
    )  # nothing addressed to samr
    # the pending approvals of police never include another provider's
    police = admin(client, people["police_steward"], "{ pendingApprovals { provider } }").json()["data"]
    assert police["pendingApprovals"] and {a["provider"] for a in police["pendingApprovals"]} == {"police"}
    # return → resubmit → reject, and withdraw refused from a final state
    ret = 'mutation($id: Int!) { returnApplication(id: $id, reason: "请补充依据") { state decisionReason } }'
    assert admin(client, people["police_steward"], ret, {"id": made["id"]}).json()["data"][
        "returnApplication"
    ] == {"state": "returned", "decisionReason": "请补充依据"}
    sub = 'mutation($id: Int!) { submitApplication(id: $id, note: "已补充") { state history { step } } }'
    resub = admin(client, people["hrss_system"], sub, {"id": made["id"]}).json()["data"]["submitApplication"]
    assert resub["state"] == "submitted" and resub["history"][-1]["step"] == "resubmit"
    rej = "mutation($id: Int!, $r: String!) { rejectApplication(id: $id, reason: $r) { state } }"
    assert _codes(admin(client, people["police_steward"], rej, {"id": made["id"], "r": " "}).json()) == [
        "BAD_USER_INPUT"
    ]
    assert admin(client, people["police_steward"], rej, {"id": made["id"], "r": "不符合最小必要原则"}).json()[
        "data"
    ]["rejectApplication"] == {"state": "rejected"}
    wd = "mutation($id: Int!) { withdrawApplication(id: $id) { state } }"
    assert _codes(admin(client, people["hrss_system"], wd, {"id": made["id"]}).json()) == ["CONFLICT"]


def test_bad_input_lists_valid_values(client: Any, people: dict[str, str]) -> None:
    r = _create(client, people["hrss_dev"], fields=[{"name": "nosuch"}]).json()
    assert _codes(r) == ["BAD_USER_INPUT"] and "valid:" in r["errors"][0]["message"]
    assert "phone" in r["errors"][0]["message"]
    r = _create(client, people["hrss_dev"], fields=[{"name": "idNumber", "treatment": "clear"}]).json()
    assert _codes(r) == ["BAD_USER_INPUT"] and "valid for it: encrypted" in r["errors"][0]["message"]
    r = _create(client, people["hrss_dev"], periodEnd="tomorrow").json()
    assert _codes(r) == ["BAD_USER_INPUT"] and "YYYY-MM-DD" in r["errors"][0]["message"]
    r = _create(client, people["hrss_dev"], dataset="nope").json()
    assert _codes(r) == ["BAD_USER_INPUT"] and "population" in r["errors"][0]["message"]
    r = admin(client, people["hrss_dev"], '{ grants(state: "nope") { id } }').json()
    assert _codes(r) == ["BAD_USER_INPUT"] and "active" in r["errors"][0]["message"]


def test_authentication_and_the_call_event(client: Any, demo_env: Any, people: dict[str, str]) -> None:
    r = admin(client, None, "{ myApplications { id } }")
    assert r.status_code == 401 and _codes(r.json()) == ["UNAUTHENTICATED"]
    assert 'realm="shuqiao-admin"' in r.headers["www-authenticate"]
    r = admin(client, "not-a-token", "{ myApplications { id } }")
    assert r.status_code == 401
    r = admin(client, people["hrss_dev"], "{ nope }")
    assert r.status_code == 400 and _codes(r.json()) == ["GRAPHQL_VALIDATION_FAILED"]
    rid = f"t-{secrets.token_hex(8)}"
    r = client.post(
        "/admin/graphql",
        json={"query": "query Mine { myApplications { id } }"},
        headers={"Authorization": f"Bearer {people['hrss_dev']}", "X-Request-ID": rid},
    )
    assert r.status_code == 200

    from gateway.audit.models import AuditEvent

    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(select(AuditEvent.__table__).where(AuditEvent.request_id == rid))
            return [dict(x._mapping) for x in rows]

    rows = on_db(demo_env, go)
    assert len(rows) == 1
    row = rows[0]
    assert row["tier"] == "admin" and row["operation_name"] == "graphql:Mine" and row["consumer"] == "hrss"
    assert row["principal_kind"] == "person" and row["subject"]

    async def steps(engine: Any) -> set[tuple[str, str]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.principal_id, AuditEvent.principal_kind).where(
                    AuditEvent.operation_name == "application.create"
                )
            )
            return {(r[0], r[1]) for r in rows}

    made = on_db(demo_env, steps)  # each step is an event of its own, naming who took it
    assert ("hrss-developer", "person") in made and any(k == "system" for _, k in made)


def test_a_steward_system_approves_with_client_credentials(
    client: Any, demo_env: Any, people: dict[str, str]
) -> None:
    """The README's machine path: a police approvals system (client credentials, grants:approve)."""
    cid, secret = on_db(
        demo_env,
        lambda e: create_client(
            e,
            hasher(demo_env),
            "police",
            client_id=f"police-approvals-{secrets.token_hex(3)}",
            scopes=["share:read", "grants:approve"],
        ),
    )
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))
    police_system = r.json()["access_token"]
    made = _create(client, people["hrss_system"]).json()["data"]["createApplication"]
    done = admin(
        client,
        police_system,
        APPROVE,
        {"id": made["id"], "input": {"fields": [{"name": "phone", "treatment": "masked"}]}},
    ).json()
    assert "errors" not in done, done
    app = done["data"]["approveApplication"]
    assert app["state"] == "approved" and app["history"][-1]["actor"] == cid
    revoke = 'mutation($id: Int!) { revokeGrant(id: $id, reason: "test over") { state } }'
    assert (
        admin(client, police_system, revoke, {"id": app["grantId"]}).json()["data"]["revokeGrant"]["state"]
        == "revoked"
    )


def test_failed_authentication_is_limited_per_address(demo_env: Any) -> None:
    """Like every endpoint that takes a credential: past SHUQIAO_AUTH_FAILURE_RATE, 429 without
    trying the token."""
    from starlette.testclient import TestClient

    from gateway.app import create_app

    settings = demo_env.settings.with_(auth_failure_rate="2/minute", trusted_proxies=("10.9.0.2",))
    address = {"X-Forwarded-For": f"203.0.113.{secrets.randbelow(250) + 1}"}
    with TestClient(create_app(settings), client=("10.9.0.2", 40000)) as c:
        statuses = [
            c.post(
                "/admin/graphql",
                json={"query": "{ myApplications { id } }"},
                headers={**address, "Authorization": "Bearer forged"},
            ).status_code
            for _ in range(4)
        ]
        assert statuses[:2] == [401, 401] and statuses[2:] == [429, 429]
        r = c.post("/admin/graphql", json={"query": "{ myApplications { id } }"}, headers=address)
        assert r.status_code == 429 and _codes(r.json()) == ["RATE_LIMITED"] and "retry-after" in r.headers
