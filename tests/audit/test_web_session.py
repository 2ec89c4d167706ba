"""People sign in to the officers' console (gateway.web.session) over real HTTP: the redirect to
the sign-in page, the authorization-code flow with PKCE, the session cookie; the page view is an
audit event; sessions end on expiry, idleness, sign-out, and within a second of disabling the
person; state-changing calls without the CSRF token are refused; anyone but an officer gets 403
on every officer page and API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tests.audit.signin import make_user, sign_in
from tests.support import on_db, serve

OFFICER_APIS = [
    "/audit/api/events",
    "/audit/api/stats",
    "/audit/api/verify",
    "/audit/api/alerts",
    "/audit/api/posture",
    "/audit/api/posture/traffic",
    "/audit/api/export",
]


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env, SHUQIAO_AUDIT_STORE="chain") as base:
        yield base


@pytest.fixture(scope="module")
def officer(demo_env: Any) -> tuple[str, str]:
    return "demo-officer", demo_env.credentials["users"]["demo-officer"]["password"]


def _set_session(demo_env: Any, client: httpx.Client, **values: Any) -> None:
    from gateway.web.models import WebSession

    me = client.get("/web/session").json()

    async def go(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                update(WebSession.__table__)
                .where(WebSession.__table__.c.user_id == me["user_id"])
                .values(**values)
            )

    on_db(demo_env, go)


def test_officer_signs_in_through_the_oauth_pages_and_the_page_view_is_audited(
    served: str, officer: tuple[str, str]
) -> None:
    anonymous = httpx.get(f"{served}/audit")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/web/login")
    client, page = sign_in(served, *officer)
    with closing(client):
        assert page.status_code == 200 and page.url.path == "/audit", page.text[:300]
        assert "态势" in page.text and 'id="token"' not in page.text  # no token pasting
        history = [r.url.path for r in page.history]
        # signed in → straight back with a code (a first-party client: no consent page) → the page
        assert history == ["/oauth/login", "/oauth/authorize", "/web/callback"]
        cookie = next(c for c in client.cookies.jar if c.name == "sq_web")
        assert cookie.has_nonstandard_attr("HttpOnly") and cookie.path == "/"
        me = client.get("/web/session").json()
        assert me["user"] == officer[0] and "security_officer" in me["roles"] and "audit:read" in me["scopes"]
        assert client.get("/audit/api/posture").status_code == 200
        events = client.get("/audit/api/events", params={"tier": "audit", "principal": me["user_id"]}).json()
        ops = [e["operation_name"] for e in events["events"]]
        assert "page" in ops and "posture" in ops, ops
        # the sign-in itself: the web session's start is on the chain too
        starts = client.get("/audit/api/events", params={"tier": "identity", "principal": officer[0]}).json()
        assert "web.session.start" in [e["operation_name"] for e in starts["events"]]
        assert "consent.grant" in [e["operation_name"] for e in starts["events"]]  # recorded, not asked


def test_non_officer_gets_403_on_every_officer_page_and_api(served: str, demo_env: Any) -> None:
    client, page = sign_in(served, *make_user(demo_env, ["developer"], "hrss"))
    with closing(client):
        assert page.status_code == 403 and page.url.path == "/audit"
        for path in OFFICER_APIS:
            assert client.get(path).status_code == 403, path
        assert client.post("/audit/graphql", json={"query": "{ __typename }"}).status_code == 403
        # signed in all the same: the session says who, without the audit scope
        assert client.get("/web/session").json()["scopes"] == ["openid", "profile", "share:read"]


def test_csrf_is_required_for_state_changing_calls(served: str, officer: tuple[str, str]) -> None:
    client, _ = sign_in(served, *officer)
    with closing(client):
        csrf = client.get("/web/session").json()["csrf"]
        body = {"comment": "checked"}
        refused = client.post("/audit/api/alerts/999999/ack", json=body)
        assert refused.status_code == 403 and "CSRF" in refused.text
        wrong = client.post("/audit/api/alerts/999999/ack", json=body, headers={"X-CSRF-Token": "nope"})
        assert wrong.status_code == 403
        cross = client.post(
            "/audit/api/alerts/999999/ack",
            json=body,
            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        ok = client.post("/audit/api/alerts/999999/ack", json=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 404  # past the session checks: there is no such alert
        assert client.post("/web/logout", follow_redirects=False).status_code == 403  # sign-out too
        assert client.get("/audit/api/posture").status_code == 200


def test_session_expires_absolutely_and_when_idle(
    served: str, demo_env: Any, officer: tuple[str, str]
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=5)
    client, _ = sign_in(served, *officer)
    with closing(client):
        assert client.get("/audit/api/posture/chain").status_code == 200
        _set_session(demo_env, client, expires_at=past)
        assert client.get("/audit/api/posture/chain").status_code == 401
        page = client.get("/audit", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/web/login?next=/audit"
    client, _ = sign_in(served, *officer)
    with closing(client):
        _set_session(demo_env, client, last_seen_at=past - timedelta(hours=1))  # idle 30 min by default
        assert client.get("/audit/api/posture/chain").status_code == 401


def test_sign_out_ends_the_session_and_its_token(served: str, officer: tuple[str, str]) -> None:
    client, _ = sign_in(served, *officer)
    with closing(client):
        value = client.cookies["sq_web"]
        csrf = client.get("/web/session").json()["csrf"]
        out = client.post("/web/logout", headers={"X-CSRF-Token": csrf})
        assert out.url.path == "/oauth/login"  # the sign-in cookie of /oauth is gone too
        assert "sq_web" not in client.cookies
        replay = httpx.get(f"{served}/audit/api/posture", cookies={"sq_web": value})
        assert replay.status_code == 401
        again = client.get("/audit")  # signing in again asks for the password
        assert again.url.path == "/oauth/authorize" and 'name="password"' in again.text


def test_disabling_the_person_cuts_the_session_within_a_second(served: str, demo_env: Any) -> None:
    from gateway.identity.users import UserService

    username, password = make_user(demo_env, ["security_officer"])
    client, page = sign_in(served, username, password)
    with closing(client):
        assert page.status_code == 200
        assert client.get("/audit/api/posture/chain").status_code == 200

        async def disable(engine: Any) -> None:
            await UserService(engine).update(username, disabled=True)

        on_db(demo_env, disable)
        statuses = []
        for _ in range(30):  # the revocation list polls once a second; allow for a slow machine
            statuses.append(client.get("/audit/api/posture/chain").status_code)
            if statuses[-1] == 401:
                break
            time.sleep(0.2)
        assert statuses[-1] == 401, statuses


def test_bearer_tokens_still_work_for_machines(served: str, demo_env: Any) -> None:
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make(engine: Any) -> tuple[str, str | None]:
        hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
        return await create_client(engine, hasher, "police", scopes=["audit:read"])

    cid, secret = on_db(demo_env, make)
    assert secret is not None
    token = httpx.post(
        f"{served}/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
    ).json()["access_token"]
    r = httpx.get(f"{served}/audit/api/posture", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and set(r.json()) >= {
        "traffic",
        "sensitive",
        "alerts",
        "grants",
        "unusual",
        "chain",
    }


@pytest.mark.parametrize(
    "asked", ["https://evil.example/", "//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/x", ""]
)
def test_sign_in_returns_only_to_this_gateway(asked: str) -> None:
    from gateway.web.session import safe_next

    assert safe_next(asked) == "/audit"
    assert safe_next("/audit?x=1") == "/audit?x=1"
