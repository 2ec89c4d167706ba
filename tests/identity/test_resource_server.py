"""The share tier as a resource server (RFC 6750 / RFC 9068): forged, expired, misdirected
and under-scoped tokens are refused with 401 (403 for scope) and nothing else revealed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from gateway.identity.tokens import SHARE_AUDIENCE, TokenService, load_signing_key

Q = "{ enterpriseRegistration(first: 1) { totalCount } }"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(issuer: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    c = {
        "iss": issuer,
        "sub": "demo-samr",
        "aud": SHARE_AUDIENCE,
        "client_id": "demo-samr",
        "dept": "samr",
        "scope": "share:read",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j-" + str(now),
    }
    c.update(over)
    return c


def _ours(demo_env: Any) -> ECKey:
    return load_signing_key(demo_env.settings.var_dir / "keys" / "token-es256.pem")


def _share(client: Any, token: str) -> Any:
    return client.post("/share/graphql", json={"query": Q}, headers={"Authorization": f"Bearer {token}"})


def _assert_refused(r: Any) -> None:
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    body = r.json()
    assert body["errors"][0]["message"] == "The access token is invalid or expired."
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "data" not in body


def test_genuine_token_accepted(client: Any, tokens: dict[str, str]) -> None:
    r = _share(client, tokens["samr"])
    assert r.status_code == 200 and r.json()["data"]["enterpriseRegistration"]["totalCount"] > 0


def test_alg_none_refused(client: Any, demo_env: Any) -> None:
    key = _ours(demo_env)
    head = {"alg": "none", "typ": "at+jwt", "kid": key.kid}
    token = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(_claims('http://testserver')).encode())}."
    _assert_refused(_share(client, token))


def test_hmac_with_public_key_refused(client: Any, demo_env: Any) -> None:
    key = _ours(demo_env)
    public_pem = key.as_pem(private=False)
    head = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    signing_input = (
        f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(_claims('http://testserver')).encode())}"
    )
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    _assert_refused(_share(client, f"{signing_input}.{_b64(sig)}"))


def test_unknown_kid_and_foreign_key_refused(client: Any, demo_env: Any) -> None:
    other = ECKey.generate_key("P-256")
    claims = _claims("http://testserver")
    unknown = jwt.encode(
        {"alg": "ES256", "typ": "at+jwt", "kid": "not-ours"}, claims, other, algorithms=["ES256"]
    )
    _assert_refused(_share(client, unknown))
    ours_kid = _ours(demo_env).kid
    forged = jwt.encode(
        {"alg": "ES256", "typ": "at+jwt", "kid": ours_kid}, claims, other, algorithms=["ES256"]
    )
    _assert_refused(_share(client, forged))


@pytest.mark.parametrize(
    "over",
    [
        {"iss": "http://evil.example"},
        {"aud": "shuqiao:admin"},
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200},
        {"nbf": int(time.time()) + 3600},
    ],
    ids=["wrong-iss", "admin-aud", "foreign-aud", "expired", "not-yet-valid"],
)
def test_signed_by_us_but_wrong_claims_refused(client: Any, demo_env: Any, over: dict[str, Any]) -> None:
    key = _ours(demo_env)
    token = jwt.encode(
        {"alg": "ES256", "typ": "at+jwt", "kid": key.kid},
        _claims("http://testserver", **over),
        key,
        algorithms=["ES256"],
    )
    _assert_refused(_share(client, token))


def test_id_token_is_not_an_access_token(client: Any, demo_env: Any) -> None:
    key = _ours(demo_env)
    token = jwt.encode(
        {"alg": "ES256", "typ": "JWT", "kid": key.kid},
        _claims("http://testserver"),
        key,
        algorithms=["ES256"],
    )
    _assert_refused(_share(client, token))


def test_insufficient_scope_is_403(client: Any, demo_env: Any) -> None:
    svc = TokenService(_ours(demo_env), "http://testserver")
    token, _ = svc.issue_with_claims("demo-samr", "samr", ["audit:read"], extra={"aud": SHARE_AUDIENCE})
    r = _share(client, token)
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="share:read"' in r.headers["www-authenticate"]


def test_garbage_and_wrong_scheme(client: Any) -> None:
    _assert_refused(_share(client, "not-a-jwt"))
    _assert_refused(_share(client, "a.b.c"))
    r = client.post("/share/graphql", json={"query": Q}, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert r.status_code == 401 and 'error="invalid_request"' in r.headers["www-authenticate"]
