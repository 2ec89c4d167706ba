"""Failed authentication from outside: limited per client address on every endpoint that takes a
credential (past SHUQIAO_AUTH_FAILURE_RATE: 429 with Retry-After, the credential not even tried,
one audit event per refused burst), one indistinct answer for unknown and wrong client
credentials (with the same hashing work), unreadable Basic credentials answered 401, and
X-Forwarded-For believed only from a configured proxy."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.identity.users import UserService
from tests.identity.conftest import on_db
from tests.identity.test_audit_events import _basic, _field, _rid, one

PROXY = "10.9.0.1"
LIMIT = 3
_addresses = itertools.count(1)


def _address() -> str:
    """A caller address of its own for each test (the counters are per address)."""
    return f"198.51.{secrets.randbelow(200)}.{next(_addresses)}"


@pytest.fixture(scope="module")
def tight(demo_env: Any) -> Iterator[Any]:
    """An app with a failure limit of 3 a minute, reached through a proxy we trust, so each test
    can speak from its own address with X-Forwarded-For."""
    from starlette.testclient import TestClient

    from gateway.app import create_app

    settings = demo_env.settings.with_(auth_failure_rate=f"{LIMIT}/minute", trusted_proxies=(PROXY,))
    with TestClient(create_app(settings), client=(PROXY, 40000)) as c:
        yield c


def by_address(demo_env: Any, address: str) -> list[dict[str, Any]]:
    async def go(engine: Any) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.__table__)
                .where(AuditEvent.client_address == address)
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            )
            return [dict(r._mapping) for r in rows]

    return on_db(demo_env, go)


def _token(c: Any, address: str, cid: str, secret: str) -> Any:
    return c.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={**_basic(cid, secret), "X-Forwarded-For": address},
    )


def test_token_endpoint_limits_failures_per_address(tight: Any, demo_env: Any) -> None:
    c = demo_env.credentials["clients"]["tax"]
    address = _address()
    wrong = [_token(tight, address, c["client_id"], "wrong-" + secrets.token_hex(4)) for _ in range(LIMIT)]
    assert [r.status_code for r in wrong] == [401] * LIMIT
    refused = [_token(tight, address, c["client_id"], c["client_secret"]) for _ in range(5)]
    assert {r.status_code for r in refused} == {429}  # not even the right secret is tried now
    body = refused[0].json()
    assert body["error"] == "slow_down" and "access_token" not in refused[0].text
    assert int(refused[0].headers["retry-after"]) >= 1 and refused[0].headers["cache-control"] == "no-store"
    # the other endpoints that authenticate a client share the count
    r = tight.post("/oauth/introspect", data={"token": "x"}, headers={"X-Forwarded-For": address})
    assert r.status_code == 429
    # another address is not affected
    assert _token(tight, _address(), c["client_id"], c["client_secret"]).status_code == 200

    rows = by_address(demo_env, address)
    assert [r["operation_name"] for r in rows] == ["token.refuse"] * LIMIT + ["auth.throttled"]
    throttled = rows[-1]
    assert throttled["status"] == 429 and json.loads(throttled["error_codes"]) == ["rate_limited"]
    assert throttled["principal_id"] == c["client_id"]  # as claimed; never the secret
    assert c["client_secret"] not in json.dumps(rows, default=str)


def _share(c: Any, address: str, token: str) -> Any:
    return c.post(
        "/share/graphql",
        json={"query": "{ __typename }"},
        headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": address},
    )


def test_share_tier_limits_bad_tokens(tight: Any, demo_env: Any, tokens: dict[str, str]) -> None:
    address = _address()
    assert [_share(tight, address, "not-a-token").status_code for _ in range(LIMIT)] == [401] * LIMIT
    refused = [_share(tight, address, tokens["samr"]) for _ in range(6)]
    assert {r.status_code for r in refused} == {429}
    err = refused[0].json()["errors"][0]
    assert err["extensions"]["code"] == "RATE_LIMITED" and "retry-after" in refused[0].headers
    rows = by_address(demo_env, address)
    # three refusals and one event for the whole refused burst, not six
    assert [(r["tier"], r["status"]) for r in rows] == [("share", 401)] * LIMIT + [("share", 429)]


def test_open_tier_limits_bad_api_keys_not_anonymous_calls(tight: Any, demo_env: Any) -> None:
    address = _address()
    query = {"query": "{ __typename }"}

    def call(key: str | None) -> int:
        headers = {"X-Forwarded-For": address, **({"X-API-Key": key} if key else {})}
        return tight.post("/open/graphql", json=query, headers=headers).status_code

    assert [call("sk_nope_" + secrets.token_hex(8)) for _ in range(LIMIT)] == [401] * LIMIT
    good = demo_env.credentials["api_keys"]["demo-bank"]
    assert [call(good), call(good)] == [429, 429]
    assert call(None) == 200  # presenting no credential is the anonymous tier, limited on its own
    rows = by_address(demo_env, address)
    assert [r["status"] for r in rows] == [401] * LIMIT + [429, 200]


def test_admin_api_limits_bad_tokens(tight: Any, demo_env: Any) -> None:
    address = _address()
    headers = {"Authorization": "Bearer forged", "X-Forwarded-For": address}
    body = {"department": "tax"}
    codes = [tight.post("/admin/identity/clients", json=body, headers=headers).status_code for _ in range(5)]
    assert codes == [401] * LIMIT + [429, 429]
    rows = by_address(demo_env, address)
    assert [(r["operation_name"], r["status"]) for r in rows] == [("admin.client.create", 401)] * LIMIT + [
        ("auth.throttled", 429)
    ]


def test_sign_in_limits_wrong_passwords(tight: Any, demo_env: Any) -> None:
    username = f"thr-{secrets.token_hex(3)}"
    password = f"pw-{secrets.token_hex(8)}-long"
    on_db(
        demo_env, lambda e: UserService(e).create(username, password, roles=["developer"], department="tax")
    )
    address = _address()

    def attempt(pw: str) -> Any:
        page = tight.get("/oauth/login")
        return tight.post(
            "/oauth/login",
            data={"username": username, "password": pw, "csrf": _field(page.text, "csrf"), "next": ""},
            headers={"X-Forwarded-For": address},
            follow_redirects=False,
        )

    assert [attempt("wrong-one").status_code for _ in range(LIMIT)] == [401] * LIMIT
    refused = [attempt(password) for _ in range(3)]  # the right password, too late
    assert {r.status_code for r in refused} == {429} and "retry-after" in refused[0].headers
    assert "sq_session" not in refused[0].headers.get("set-cookie", "")
    rows = by_address(demo_env, address)
    assert [r["operation_name"] for r in rows] == ["login.failure"] * LIMIT + ["login.throttled"]
    assert password not in json.dumps(rows, default=str)
    tight.cookies.clear()


def test_failures_are_counted_in_redis_across_processes(demo_env: Any) -> None:
    """With SHUQIAO_REDIS_URL every worker sees one count: failures at one app block at another."""
    from starlette.testclient import TestClient

    from gateway.app import create_app

    settings = demo_env.settings.with_(
        auth_failure_rate=f"{LIMIT}/minute",
        trusted_proxies=(PROXY,),
        redis_url="redis://127.0.0.1:6379/0",
        redis_namespace=f"shuqiao-test-{secrets.token_hex(4)}",
    )
    c = demo_env.credentials["clients"]["tax"]
    address = _address()
    with (
        TestClient(create_app(settings), client=(PROXY, 1)) as one_worker,
        TestClient(create_app(settings), client=(PROXY, 2)) as other_worker,
    ):
        for _ in range(LIMIT):
            assert _token(one_worker, address, c["client_id"], "wrong").status_code == 401
        assert _token(other_worker, address, c["client_id"], c["client_secret"]).status_code == 429


def test_anonymous_refusals_are_one_event_per_window(demo_env: Any) -> None:
    """Anonymous callers past their limit do not grow the log either: one event per refused burst."""
    from starlette.testclient import TestClient

    from gateway.app import create_app

    settings = demo_env.settings.with_(
        anonymous_rate="2/minute", explorer_rate="2/minute", trusted_proxies=(PROXY,)
    )
    address, other = _address(), _address()
    with TestClient(create_app(settings), client=(PROXY, 3)) as app:
        codes = [
            app.post("/open/graphql", json={"query": "{ __typename }"}, headers={"X-Forwarded-For": address})
            for _ in range(6)
        ]
        pages = [app.get("/explore/api/catalogue", headers={"X-Forwarded-For": other}) for _ in range(5)]
    assert [r.status_code for r in codes] == [200, 200, 429, 429, 429, 429]
    assert [r.status_code for r in pages] == [200, 200, 429, 429, 429]
    assert [r["status"] for r in by_address(demo_env, address)] == [200, 200, 429]
    assert [r["status"] for r in by_address(demo_env, other)] == [200, 200, 429]


# ---------------------------------------------------------------------- one answer for client failures


def test_unknown_client_and_wrong_secret_look_the_same(client: Any, monkeypatch: Any, demo_env: Any) -> None:
    hasher = client.app.state.gateway.identity.hasher
    calls: list[str] = []
    real = hasher.verify
    monkeypatch.setattr(hasher, "verify", lambda s, h: calls.append(h) or real(s, h))
    c = demo_env.credentials["clients"]["tax"]
    unknown_id = "no-such-client-" + secrets.token_hex(4)

    answers = {}
    work = {}
    for name, (cid, secret) in {
        "unknown": (unknown_id, "whatever-" + secrets.token_hex(4)),
        "wrong": (c["client_id"], "wrong-" + secrets.token_hex(4)),
    }.items():
        for how in ("basic", "post"):
            calls.clear()
            if how == "basic":
                r = client.post(
                    "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(cid, secret)
                )
            else:
                r = client.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
                )
            answers[name, how] = (r.status_code, r.text, r.headers.get("www-authenticate"))
            work[name, how] = len(calls)
    assert len(set(answers.values())) == 1, answers  # one status, one body, one challenge
    status, text, challenge = answers["unknown", "basic"]
    body = json.loads(text)
    assert status == 401 and body["error"] == "invalid_client" and challenge
    assert "exist" not in body["error_description"]
    # an unknown client costs one secret check, as a known one does: the timing tells nothing
    assert work["unknown", "basic"] == work["wrong", "basic"] == 1
    assert work["unknown", "post"] == work["wrong", "post"] == 1


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
@pytest.mark.parametrize(
    "credentials", [b"\xff\xfe:\xfa", "张三:密码".encode("gb18030")], ids=["bytes", "gbk"]
)
def test_basic_credentials_that_are_not_utf8(
    client: Any, demo_env: Any, path: str, credentials: bytes
) -> None:
    rid = _rid()
    r = client.post(
        path,
        data={"grant_type": "client_credentials", "token": "x"},
        headers={"Authorization": "Basic " + base64.b64encode(credentials).decode(), "X-Request-ID": rid},
    )
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "invalid_client" and r.headers["www-authenticate"].startswith("Basic")
    row, detail = one(demo_env, rid)
    assert json.loads(row["error_codes"]) == ["invalid_client"] and row["status"] == 401
    assert detail["client_authenticated"] is False


def test_basic_credentials_that_are_not_base64(client: Any, demo_env: Any) -> None:
    rid = _rid()
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic %%%not-base64", "X-Request-ID": rid},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    one(demo_env, rid)


# ---------------------------------------------------------------------- X-Forwarded-For through the app


@pytest.mark.parametrize(
    ("trusted", "forwarded", "recorded"),
    [
        ((), "198.51.100.7", PROXY),  # default: nobody's header is believed
        ((PROXY,), "198.51.100.7", "198.51.100.7"),
        (("10.9.0.0/24",), "6.6.6.6, 198.51.100.7, 10.9.0.2", "198.51.100.7"),
    ],
)
def test_the_recorded_address(demo_env: Any, trusted: tuple[str, ...], forwarded: str, recorded: str) -> None:
    from starlette.testclient import TestClient

    from gateway.app import create_app

    c = demo_env.credentials["clients"]["tax"]
    with TestClient(create_app(demo_env.settings.with_(trusted_proxies=trusted)), client=(PROXY, 5)) as app:
        rid = _rid()
        r = app.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={
                **_basic(c["client_id"], c["client_secret"]),
                "X-Forwarded-For": forwarded,
                "X-Request-ID": rid,
            },
        )
        assert r.status_code == 200
        rid2 = _rid()
        app.post(
            "/open/graphql",
            json={"query": "{ __typename }"},
            headers={"X-Forwarded-For": forwarded, "X-Request-ID": rid2},
        )
    assert one(demo_env, rid)[0]["client_address"] == recorded
    assert [r["client_address"] for r in _events(demo_env, rid2)] == [recorded]


def _events(demo_env: Any, rid: str) -> list[dict[str, Any]]:
    from tests.identity.test_audit_events import events

    return events(demo_env, rid)
