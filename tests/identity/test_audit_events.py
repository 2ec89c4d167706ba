"""Every login and token event goes to the audit log (tier `identity`): exactly one event per
request, with the right fields, and never the token, secret, API key or password in the
stored row. And it is fail closed: no token, session or key leaves unrecorded."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.audit.models import AuditEvent
from gateway.identity.clients import create_client
from gateway.identity.models import User
from gateway.identity.tokens import peek_claims
from gateway.identity.users import UserService
from tests.identity.conftest import hasher, on_db

REDIRECT = "http://127.0.0.1:9/callback"


def _rid() -> str:
    return f"t-{uuid.uuid4().hex}"


def events(demo_env: Any, request_id: str) -> list[dict[str, Any]]:
    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(select(AuditEvent.__table__).where(AuditEvent.request_id == request_id))
            return [dict(r._mapping) for r in rows]

    return on_db(demo_env, go)


def one(demo_env: Any, request_id: str, *secrets_: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one event of a request, and its identity detail; no secret anywhere in the row."""
    rows = events(demo_env, request_id)
    assert len(rows) == 1, rows
    row = rows[0]
    text = json.dumps(row, default=str)
    for s in secrets_:
        assert s and s not in text, f"a secret is in the audit row: {text}"
    assert row["tier"] == "identity"
    detail = json.loads(row["detail"])
    assert detail["fields"] == []
    return row, detail["reads"][0]["identity"]


def _basic(cid: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()}


def test_token_issue_and_refusal(client: Any, demo_env: Any) -> None:
    c = demo_env.credentials["clients"]["tax"]
    rid = _rid()
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={**_basic(c["client_id"], c["client_secret"]), "X-Request-ID": rid},
    )
    assert r.status_code == 200
    token = r.json()["access_token"]
    row, d = one(demo_env, rid, token, c["client_secret"], token.split(".")[2])
    assert row["operation_name"] == "token.issue" and row["status"] == 200
    assert (row["principal_kind"], row["principal_id"], row["consumer"]) == ("client", c["client_id"], "tax")
    assert json.loads(row["error_codes"]) == []
    assert d["grant_type"] == "client_credentials" and d["scope"] == "share:read"
    assert d["jti"] == peek_claims(token)["jti"] and d["client_authenticated"] is True

    rid = _rid()
    wrong = "not-the-secret-" + secrets.token_hex(8)
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={**_basic(c["client_id"], wrong), "X-Request-ID": rid},
    )
    assert r.status_code == 401
    row, d = one(demo_env, rid, wrong)
    assert row["operation_name"] == "token.refuse" and row["status"] == 401
    assert json.loads(row["error_codes"]) == ["invalid_client"]
    assert row["principal_id"] == c["client_id"] and d["client_authenticated"] is False


def test_revocation_and_introspection(client: Any, demo_env: Any) -> None:
    c = demo_env.credentials["clients"]["samr"]
    auth = _basic(c["client_id"], c["client_secret"])
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=auth).json()[
        "access_token"
    ]
    jti = peek_claims(token)["jti"]
    rid = _rid()
    r = client.post("/oauth/introspect", data={"token": token}, headers={**auth, "X-Request-ID": rid})
    assert r.json()["active"] is True
    row, d = one(demo_env, rid, token, c["client_secret"])
    assert row["operation_name"] == "token.introspect" and row["principal_id"] == c["client_id"]
    assert d == {
        "client_authenticated": True,
        "token_type": "access_token",
        "jti": jti,
        "token_client_id": c["client_id"],
        "active": True,
    }
    rid = _rid()
    r = client.post(
        "/oauth/revoke",
        data={"token": token, "token_type_hint": "access_token"},
        headers={**auth, "X-Request-ID": rid},
    )
    assert r.status_code == 200
    row, d = one(demo_env, rid, token, c["client_secret"])
    assert row["operation_name"] == "token.revoke" and row["consumer"] == "samr"
    assert d["revoked"] is True and d["jti"] == jti and d["token_type_hint"] == "access_token"
    rid = _rid()
    client.post("/oauth/revoke", data={"token": "nonsense"}, headers={**auth, "X-Request-ID": rid})
    _, d = one(demo_env, rid)
    assert d["found"] is False and d["revoked"] is False


# ---------------------------------------------------------------------- people


@pytest.fixture(scope="module")
def person(demo_env: Any) -> dict[str, str]:
    username = f"aud-{secrets.token_hex(3)}"
    password = f"pw-{secrets.token_hex(8)}-long"
    user = on_db(
        demo_env,
        lambda e: UserService(e).create(username, password, roles=["developer"], department="hrss"),
    )
    cid = f"hrss-aud-{secrets.token_hex(3)}"
    _, secret = on_db(
        demo_env,
        lambda e: create_client(
            e,
            hasher(demo_env),
            "hrss",
            client_id=cid,
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[REDIRECT],
        ),
    )
    return {
        "username": username,
        "password": password,
        "user_id": user.id,
        "client_id": cid,
        "client_secret": secret or "",
    }


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} in page"
    return m.group(1).replace("&amp;", "&")


def _login(client: Any, username: str, password: str, rid: str, next_url: str = "") -> Any:
    page = client.get("/oauth/login", params={"next": next_url} if next_url else None)
    return client.post(
        "/oauth/login",
        data={
            "username": username,
            "password": password,
            "csrf": _field(page.text, "csrf"),
            "next": next_url,
        },
        headers={"X-Request-ID": rid},
        follow_redirects=False,
    )


def test_sign_in_consent_code_refresh_and_reuse(client: Any, demo_env: Any, person: dict[str, str]) -> None:
    client.cookies.clear()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": person["client_id"],
        "redirect_uri": REDIRECT,
        "scope": "openid share:read",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    authorize = client.build_request("GET", "/oauth/authorize", params=params).url
    next_url = f"{authorize.path}?{authorize.query.decode()}"

    rid = _rid()
    assert _login(client, person["username"], "wrong password!!", rid, next_url).status_code == 401
    row, d = one(demo_env, rid, "wrong password!!", person["password"])
    assert row["operation_name"] == "login.failure" and row["status"] == 401
    assert row["principal_kind"] == "user" and row["principal_id"] == person["username"]
    assert json.loads(row["error_codes"]) == ["failure"] and row["subject"] is None

    rid = _rid()
    r = _login(client, person["username"], person["password"], rid, next_url)
    assert r.status_code == 303
    row, d = one(demo_env, rid, person["password"], r.cookies.get("sq_session") or "-")
    assert row["operation_name"] == "login.success" and row["subject"] == person["user_id"]
    assert row["consumer"] == "hrss" and json.loads(row["error_codes"]) == []

    consent = client.get(next_url)
    assert consent.status_code == 200
    rid = _rid()
    done = client.post(
        next_url,
        data={"csrf": _field(consent.text, "csrf"), "decision": "approve"},
        headers={"X-Request-ID": rid},
        follow_redirects=False,
    )
    assert done.status_code == 303
    code = re.search(r"code=([^&]+)", done.headers["location"]).group(1)  # type: ignore[union-attr]
    row, d = one(demo_env, rid, code)
    assert row["operation_name"] == "consent.grant" and row["subject"] == person["user_id"]
    assert d["client_id"] == person["client_id"] and set(d["scope"].split()) == {"openid", "share:read"}

    auth = _basic(person["client_id"], person["client_secret"])
    rid = _rid()
    r = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        headers={**auth, "X-Request-ID": rid},
    )
    assert r.status_code == 200, r.text
    first = r.json()
    row, d = one(
        demo_env, rid, code, verifier, first["access_token"], first["refresh_token"], first["id_token"]
    )
    assert row["operation_name"] == "token.issue" and row["subject"] == person["user_id"]
    assert d["grant_type"] == "authorization_code" and d["family"] and d["id_token"] is True
    family = d["family"]

    rid = _rid()
    r = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers={**auth, "X-Request-ID": rid},
    )
    assert r.status_code == 200
    second = r.json()
    row, d = one(demo_env, rid, first["refresh_token"], second["refresh_token"], second["access_token"])
    assert row["operation_name"] == "token.refresh" and row["subject"] == person["user_id"]
    assert (
        d["family"] == family == d["previous_family"]
        and d["jti"] == peek_claims(second["access_token"])["jti"]
    )

    rid = _rid()  # the spent refresh token again: reuse, the family is revoked
    r = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers={**auth, "X-Request-ID": rid},
    )
    assert r.status_code == 400
    row, d = one(demo_env, rid, first["refresh_token"])
    assert row["operation_name"] == "token.refresh_reuse" and row["subject"] == person["user_id"]
    assert d["family"] == family and d["family_revoked"] is True
    assert json.loads(row["error_codes"]) == ["invalid_grant"]

    # consent denied
    consent = client.get(next_url)
    rid = _rid()
    denied = client.post(
        next_url,
        data={"csrf": _field(consent.text, "csrf"), "decision": "deny"},
        headers={"X-Request-ID": rid},
        follow_redirects=False,
    )
    assert denied.status_code == 303 and "access_denied" in denied.headers["location"]
    row, d = one(demo_env, rid)
    assert row["operation_name"] == "consent.deny" and d["client_id"] == person["client_id"]
    client.cookies.clear()


def test_lock_out(client: Any, demo_env: Any) -> None:
    username = f"lock-{secrets.token_hex(3)}"
    password = f"pw-{secrets.token_hex(8)}-long"
    on_db(
        demo_env, lambda e: UserService(e).create(username, password, roles=["developer"], department="tax")
    )

    async def nine_failures(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(update(User).where(User.username == username).values(failed_logins=9))

    on_db(demo_env, nine_failures)
    rid = _rid()
    assert _login(client, username, "tenth wrong one", rid).status_code == 401
    row, _ = one(demo_env, rid, "tenth wrong one")
    assert row["operation_name"] == "login.locked" and row["principal_id"] == username
    rid = _rid()  # even the right password, while locked
    assert _login(client, username, password, rid).status_code == 401
    row, _ = one(demo_env, rid, password)
    assert row["operation_name"] == "login.locked" and json.loads(row["error_codes"]) == ["locked"]
    client.cookies.clear()


# ---------------------------------------------------------------------- API keys


def test_api_key_events_admin_api(client: Any, demo_env: Any) -> None:
    from gateway.identity.tokens import TokenService, load_signing_key

    svc = TokenService(
        load_signing_key(demo_env.settings.var_dir / "keys" / "token-es256.pem"), "http://testserver"
    )
    admin, _ = svc.issue("ops-console", None, ["admin"], subject="admin-li")
    h = {"Authorization": f"Bearer {admin}"}
    rid = _rid()
    r = client.post(
        "/admin/identity/apikeys",
        headers={**h, "X-Request-ID": rid},
        json={"enterprise": "demo-bank", "datasets": ["tax_credit_rating"], "rate_per_minute": 5},
    )
    created = r.json()
    row, d = one(demo_env, rid, created["api_key"], created["api_key"].split("_", 2)[2], admin)
    assert row["operation_name"] == "apikey.create" and row["status"] == 201
    assert (row["principal_id"], row["subject"], row["consumer"]) == ("ops-console", "admin-li", "demo-bank")
    assert d["prefix"] == created["prefix"] and d["datasets"] == ["tax_credit_rating"]
    assert d["rate_per_minute"] == 5

    rid = _rid()
    rotated = client.post(
        f"/admin/identity/apikeys/{created['prefix']}/rotate", headers={**h, "X-Request-ID": rid}
    ).json()
    row, d = one(demo_env, rid, rotated["api_key"], created["api_key"])
    assert row["operation_name"] == "apikey.rotate"
    assert d["prefix"] == rotated["prefix"] and d["previous_prefix"] == created["prefix"]

    rid = _rid()
    client.post(f"/admin/identity/apikeys/{rotated['prefix']}/revoke", headers={**h, "X-Request-ID": rid})
    row, d = one(demo_env, rid, rotated["api_key"])
    assert row["operation_name"] == "apikey.revoke" and d["prefix"] == rotated["prefix"]


def test_api_key_events_cli(demo_env: Any) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    run = CliRunner().invoke
    made = json.loads(run(app, ["apikey", "create", "--enterprise", "demo-bank", "--json"], env=env).output)
    rotated = json.loads(run(app, ["apikey", "rotate", made["prefix"], "--json"], env=env).output)
    assert run(app, ["apikey", "revoke", rotated["prefix"], "--json"], env=env).exit_code == 0

    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.__table__)
                .where(AuditEvent.tier == "identity", AuditEvent.operation_name.like("apikey.%"))  # type: ignore[union-attr]
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            )
            return [dict(r._mapping) for r in rows]

    rows = [r for r in on_db(demo_env, go) if r["principal_kind"] == "operator"]
    mine = [
        r
        for r in rows
        if json.loads(r["detail"])["reads"][0]["identity"]["prefix"] in (made["prefix"], rotated["prefix"])
    ]
    assert [r["operation_name"] for r in mine] == ["apikey.create", "apikey.rotate", "apikey.revoke"]
    text = json.dumps(mine, default=str)
    assert made["api_key"] not in text and rotated["api_key"] not in text
    assert all(r["principal_id"].startswith("cli") and r["consumer"] == "demo-bank" for r in mine)


# ---------------------------------------------------------------------- fail closed


class _Broken:
    async def record(self, event: Any) -> None:
        raise RuntimeError("disk full")


def test_nothing_issued_when_the_event_cannot_be_recorded(demo_env: Any, person: dict[str, str]) -> None:
    from starlette.testclient import TestClient

    from gateway.app import build_state, create_app

    settings = demo_env.settings
    app = create_app(settings, state=build_state(settings, access_log=_Broken()))
    c = demo_env.credentials["clients"]["tax"]
    with TestClient(app) as broken:
        r = broken.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(c["client_id"], c["client_secret"]),
        )
        assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
        assert "access_token" not in r.text
        page = broken.get("/oauth/login")
        r = broken.post(
            "/oauth/login",
            data={
                "username": person["username"],
                "password": person["password"],
                "csrf": _field(page.text, "csrf"),
                "next": "",
            },
            follow_redirects=False,
        )
        assert r.status_code == 503 and "sq_session" not in r.headers.get("set-cookie", "")
