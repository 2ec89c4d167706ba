"""Every OAuth flow through Authlib's httpx client against a gateway served by uvicorn:
client credentials with all three authentication methods, authorization code + PKCE
through the sign-in and consent pages, refresh rotation and reuse detection, revocation
then refusal, introspection, ID token and userinfo."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from gateway.identity.clients import create_client
from gateway.identity.users import UserService
from tests.identity.conftest import hasher, on_db

Q = {"query": "{ enterpriseRegistration(first: 1) { totalCount } }"}
REDIRECT = "http://127.0.0.1:9/callback"


def _share(base: str, token: str) -> httpx.Response:
    return httpx.post(f"{base}/share/graphql", json=Q, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def meta(served: str) -> dict[str, Any]:
    return httpx.get(f"{served}/.well-known/openid-configuration").json()


def test_discovery(meta: dict[str, Any], served: str) -> None:
    assert meta["issuer"] == served
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    for k in ("authorization_endpoint", "revocation_endpoint", "introspection_endpoint", "userinfo_endpoint"):
        assert meta[k].startswith(served)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_with_secret(
    served: str, demo_env: Any, meta: dict[str, Any], method: str
) -> None:
    c = demo_env.credentials["clients"]["tax"]
    with OAuth2Client(c["client_id"], c["client_secret"], token_endpoint_auth_method=method) as oauth:
        token = oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        assert token["scope"] == "share:read" and "refresh_token" not in token
        assert oauth.post(f"{served}/share/graphql", json=Q).status_code == 200


def test_client_credentials_private_key_jwt(served: str, demo_env: Any, meta: dict[str, Any]) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)
    public = KeySet([key]).as_dict(private=False)
    cid = f"eco-pkjwt-{secrets.token_hex(3)}"
    on_db(demo_env, lambda e: create_client(e, hasher(demo_env), "eco", client_id=cid, jwks=public))
    token_url = meta["token_endpoint"]
    with OAuth2Client(cid, key, token_endpoint_auth_method="private_key_jwt") as oauth:
        oauth.register_client_auth_method(PrivateKeyJWT(token_url, alg="ES256"))
        token = oauth.fetch_token(token_url, grant_type="client_credentials")
        assert oauth.post(f"{served}/share/graphql", json=Q).status_code == 200
    claims = jwt.decode(
        token["access_token"], KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())
    ).claims
    assert claims["dept"] == "eco" and claims["client_id"] == cid

    # the same assertion twice: replay refused
    assertion = private_key_jwt_sign(key, cid, token_url, alg="ES256")
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    assert httpx.post(token_url, data=form).status_code == 200
    second = httpx.post(token_url, data=form)
    assert second.status_code in (400, 401) and second.json()["error"] == "invalid_client"
    # an assertion signed by another key
    stranger = ECKey.generate_key("P-256", auto_kid=True)
    form["client_assertion"] = private_key_jwt_sign(stranger, cid, token_url, alg="ES256")
    assert httpx.post(token_url, data=form).json()["error"] == "invalid_client"
    # and a secret is no way in for a private_key_jwt client
    r = httpx.post(token_url, data={"grant_type": "client_credentials"}, auth=(cid, "guess"))
    assert r.status_code == 401


def test_revocation_then_refusal_and_introspection(served: str, demo_env: Any, meta: dict[str, Any]) -> None:
    c = demo_env.credentials["clients"]["samr"]
    with OAuth2Client(c["client_id"], c["client_secret"]) as oauth:
        token = oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        access = token["access_token"]
        assert _share(served, access).status_code == 200
        info = oauth.introspect_token(meta["introspection_endpoint"], token=access).json()
        assert info["active"] is True and info["dept"] == "samr" and info["client_id"] == c["client_id"]
        assert info["scope"] == "share:read" and "shuqiao:share" in info["aud"]
        # another client may neither introspect nor revoke it
        other = demo_env.credentials["clients"]["tax"]
        with OAuth2Client(other["client_id"], other["client_secret"]) as stranger:
            assert stranger.introspect_token(meta["introspection_endpoint"], token=access).json() == {
                "active": False
            }
            assert stranger.revoke_token(meta["revocation_endpoint"], token=access).status_code == 400
        assert _share(served, access).status_code == 200
        r = oauth.revoke_token(meta["revocation_endpoint"], token=access, token_type_hint="access_token")
        assert r.status_code == 200
        refused = _share(served, access)
        assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
        info = oauth.introspect_token(meta["introspection_endpoint"], token=access).json()
        assert info == {"active": False}
        # unknown tokens: revocation answers 200 (RFC 7009 section 2.2), introspection inactive
        assert oauth.revoke_token(meta["revocation_endpoint"], token="nonsense").status_code == 200
        assert oauth.introspect_token(meta["introspection_endpoint"], token="nonsense").json() == {
            "active": False
        }


# ---------------------------------------------------------------------- people


@pytest.fixture(scope="module")
def person(demo_env: Any) -> dict[str, str]:
    username = f"dev-{secrets.token_hex(3)}"
    password = "correct horse battery staple"
    on_db(
        demo_env,
        lambda e: UserService(e).create(
            username, password, roles=["developer"], department="hrss", display_name="王小明"
        ),
    )
    cid = f"hrss-web-{secrets.token_hex(3)}"
    _, secret = on_db(
        demo_env,
        lambda e: create_client(
            e,
            hasher(demo_env),
            "hrss",
            client_id=cid,
            name="人社业务系统",
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[REDIRECT],
        ),
    )
    return {"username": username, "password": password, "client_id": cid, "client_secret": secret or ""}


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} in page"
    return m.group(1).replace("&amp;", "&")


def _sign_in_and_consent(served: str, url: str, person: dict[str, str], decision: str = "approve") -> str:
    with httpx.Client(base_url=served, follow_redirects=False) as browser:
        page = browser.get(url)
        assert page.status_code == 200 and "登录" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        r = browser.post(
            "/oauth/login",
            data={
                "username": person["username"],
                "password": person["password"],
                "csrf": _field(page.text, "csrf"),
                "next": _field(page.text, "next"),
            },
        )
        assert r.status_code == 303, r.text
        consent = browser.get(r.headers["location"])
        assert consent.status_code == 200 and "人社业务系统" in consent.text and "share:read" in consent.text
        done = browser.post(
            r.headers["location"], data={"csrf": _field(consent.text, "csrf"), "decision": decision}
        )
        assert done.status_code == 303
        return done.headers["location"]


def test_authorization_code_pkce_refresh_rotation_and_reuse(
    served: str, meta: dict[str, Any], person: dict[str, str]
) -> None:
    oauth = OAuth2Client(
        person["client_id"],
        person["client_secret"],
        redirect_uri=REDIRECT,
        scope="openid profile share:read",
        code_challenge_method="S256",
    )
    verifier = secrets.token_urlsafe(48)
    url, state = oauth.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce="n-1"
    )
    back = _sign_in_and_consent(served, url, person)
    assert back.startswith(REDIRECT) and f"state={state}" in back
    token = oauth.fetch_token(meta["token_endpoint"], authorization_response=back, code_verifier=verifier)
    assert set(token["scope"].split()) == {"openid", "profile", "share:read"}
    assert token["refresh_token"] and token["id_token"]
    keys = KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())
    id_claims = jwt.decode(token["id_token"], keys).claims
    assert id_claims["aud"] == person["client_id"] and id_claims["nonce"] == "n-1"
    assert id_claims["iss"] == served and id_claims["preferred_username"] == person["username"]
    at = jwt.decode(token["access_token"], keys).claims
    assert at["dept"] == "hrss" and at["roles"] == ["developer"] and at["sub"] == id_claims["sub"]
    assert _share(served, token["access_token"]).status_code == 200
    info = oauth.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == at["sub"] and info["dept"] == "hrss" and info["name"] == "王小明"

    # the code is single use
    again = httpx.post(
        meta["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": re.search(r"code=([^&]+)", back).group(1),
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(person["client_id"], person["client_secret"]),
    )
    assert again.json()["error"] == "invalid_grant"

    # rotation: each refresh gives a new refresh token; the old one is spent
    first_rt = token["refresh_token"]
    rotated = oauth.refresh_token(meta["token_endpoint"], refresh_token=first_rt)
    second_rt = rotated["refresh_token"]
    assert second_rt != first_rt and _share(served, rotated["access_token"]).status_code == 200
    # reuse of the spent token: refused, and the whole family is revoked
    reuse = httpx.post(
        meta["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": first_rt},
        auth=(person["client_id"], person["client_secret"]),
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    after = httpx.post(
        meta["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": second_rt},
        auth=(person["client_id"], person["client_secret"]),
    )
    assert after.json()["error"] == "invalid_grant"
    import time

    time.sleep(1.1)  # the revocation list is polled once a second
    assert _share(served, rotated["access_token"]).status_code == 401


def test_pkce_is_required_and_s256_only(served: str, meta: dict[str, Any], person: dict[str, str]) -> None:
    base = {
        "response_type": "code",
        "client_id": person["client_id"],
        "redirect_uri": REDIRECT,
        "scope": "share:read",
        "state": "s",
    }
    for extra in (
        {},
        {"code_challenge": "a" * 43, "code_challenge_method": "plain"},
        {"code_challenge": "a" * 43},
    ):
        r = httpx.get(meta["authorization_endpoint"], params={**base, **extra}, follow_redirects=False)
        assert r.status_code == 303 and "error=invalid_request" in r.headers["location"], extra
    # an unregistered redirect_uri never gets a redirect
    r = httpx.get(
        meta["authorization_endpoint"],
        params={
            **base,
            "redirect_uri": "https://evil.example/cb",
            "code_challenge": "a" * 43,
            "code_challenge_method": "S256",
        },
        follow_redirects=False,
    )
    assert r.status_code == 400 and "location" not in r.headers


def test_consent_denied(served: str, meta: dict[str, Any], person: dict[str, str]) -> None:
    oauth = OAuth2Client(
        person["client_id"],
        person["client_secret"],
        redirect_uri=REDIRECT,
        scope="share:read",
        code_challenge_method="S256",
    )
    url, _ = oauth.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=secrets.token_urlsafe(48)
    )
    back = _sign_in_and_consent(served, url, person, decision="deny")
    assert "error=access_denied" in back


def test_wrong_password_page_reveals_nothing(served: str, person: dict[str, str]) -> None:
    with httpx.Client(base_url=served) as browser:
        page = browser.get("/oauth/login")
        answers = []
        for username in (person["username"], "no-such-user"):
            r = browser.post(
                "/oauth/login",
                data={
                    "username": username,
                    "password": "wrong-password!",
                    "csrf": _field(page.text, "csrf"),
                    "next": "",
                },
            )
            page = r  # each answer carries a fresh CSRF token
            answers.append((r.status_code, re.search(r'role="alert">([^<]*)<', r.text).group(1)))
        assert answers[0] == answers[1] and answers[0][0] == 401
