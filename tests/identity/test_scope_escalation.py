"""Issue 13 item 1: no client or person gets a scope it may not have, on any grant, through
Authlib's httpx client against a served gateway. The reproducer: demo-hrss (registered for
share:read) asked for admin and audit:read with client credentials, got them, created a
client through the admin API and read every department's audit events."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from gateway.identity.clients import create_client, list_clients
from gateway.identity.roles import API_SCOPES
from gateway.identity.users import UserService
from tests.identity.conftest import hasher, on_db

PRIVILEGED = ("admin", "audit:read", "catalog:write", "grants:approve")
REDIRECT = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def token_url(served: str) -> str:
    return f"{served}/oauth/token"


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_scope" and "access_token" not in r.json()


# ------------------------------------------------------------------ client credentials


@pytest.mark.parametrize("scope", PRIVILEGED)
def test_client_credentials_refused_or_narrowed(
    served: str, demo_env: Any, token_url: str, scope: str
) -> None:
    c = demo_env.credentials["clients"]["hrss"]
    with OAuth2Client(c["client_id"], c["client_secret"], scope=scope) as oauth:
        with pytest.raises(OAuthError) as refused:
            oauth.fetch_token(token_url, grant_type="client_credentials")
        assert refused.value.error == "invalid_scope"
    with OAuth2Client(c["client_id"], c["client_secret"], scope=f"share:read {scope}") as oauth:
        token = oauth.fetch_token(token_url, grant_type="client_credentials")
        assert token["scope"] == "share:read"
    _refused(
        httpx.post(
            token_url,
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(c["client_id"], c["client_secret"]),
        )
    )


def test_reproducer_admin(served: str, demo_env: Any, token_url: str) -> None:
    c = demo_env.credentials["clients"]["hrss"]
    with OAuth2Client(c["client_id"], c["client_secret"], scope="admin") as oauth, pytest.raises(OAuthError):
        oauth.fetch_token(token_url, grant_type="client_credentials")
    with OAuth2Client(c["client_id"], c["client_secret"]) as oauth:
        token = oauth.fetch_token(token_url, grant_type="client_credentials")
        assert "admin" not in token["scope"].split()
        cid = f"police-{secrets.token_hex(3)}"
        r = oauth.post(
            f"{served}/admin/identity/clients",
            json={"department": "police", "client_id": cid, "scopes": ["share:read"]},
        )
        assert r.status_code in (401, 403), r.text
    assert cid not in {row.client_id for row in on_db(demo_env, list_clients)}


def test_reproducer_audit(served: str, demo_env: Any, token_url: str) -> None:
    c = demo_env.credentials["clients"]["hrss"]
    with (
        OAuth2Client(c["client_id"], c["client_secret"], scope="audit:read") as oauth,
        pytest.raises(OAuthError),
    ):
        oauth.fetch_token(token_url, grant_type="client_credentials")
    with OAuth2Client(c["client_id"], c["client_secret"]) as oauth:
        oauth.fetch_token(token_url, grant_type="client_credentials")
        r = oauth.get(f"{served}/audit/api/events")
        assert r.status_code == 403 and "events" not in r.text


# ------------------------------------------------------------------ people


def _person(demo_env: Any, roles: list[str], client_scopes: list[str]) -> dict[str, str]:
    username = f"p-{secrets.token_hex(4)}"
    on_db(demo_env, lambda e: UserService(e).create(username, PASSWORD, roles=roles, department="hrss"))
    cid = f"hrss-app-{secrets.token_hex(3)}"
    _, secret = on_db(
        demo_env,
        lambda e: create_client(
            e,
            hasher(demo_env),
            "hrss",
            client_id=cid,
            scopes=client_scopes,
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[REDIRECT],
        ),
    )
    return {"username": username, "client_id": cid, "client_secret": secret or ""}


@pytest.fixture(scope="module")
def developer_everything(demo_env: Any) -> dict[str, str]:
    """A developer, through a client registered for every scope: the roles must narrow."""
    return _person(demo_env, ["developer"], list(API_SCOPES))


@pytest.fixture(scope="module")
def admin_narrow_client(demo_env: Any) -> dict[str, str]:
    """An administrator, through a client registered for share:read: the client must narrow."""
    return _person(demo_env, ["admin"], ["share:read"])


def _authorize(served: str, url: str, person: dict[str, str]) -> str:
    """Sign in and approve; the redirect back to the client (a code, or an error)."""
    with httpx.Client(base_url=served, follow_redirects=False) as browser:
        page = browser.get(url)
        if page.status_code == 303:
            return page.headers["location"]
        csrf = re.search(r'name="csrf" value="([^"]*)"', page.text).group(1)
        nxt = re.search(r'name="next" value="([^"]*)"', page.text).group(1).replace("&amp;", "&")
        r = browser.post(
            "/oauth/login",
            data={"username": person["username"], "password": PASSWORD, "csrf": csrf, "next": nxt},
        )
        assert r.status_code == 303, r.text
        consent = browser.get(r.headers["location"])
        if consent.status_code == 303:
            return consent.headers["location"]
        assert consent.status_code == 200, consent.text
        csrf = re.search(r'name="csrf" value="([^"]*)"', consent.text).group(1)
        done = browser.post(r.headers["location"], data={"csrf": csrf, "decision": "approve"})
        assert done.status_code == 303
        return done.headers["location"]


def _code_flow(served: str, person: dict[str, str], scope: str) -> tuple[OAuth2Client, dict[str, Any] | str]:
    """The token, or the error the authorization endpoint redirected with."""
    oauth = OAuth2Client(
        person["client_id"],
        person["client_secret"],
        redirect_uri=REDIRECT,
        scope=scope,
        code_challenge_method="S256",
    )
    verifier = secrets.token_urlsafe(48)
    url, _ = oauth.create_authorization_url(f"{served}/oauth/authorize", code_verifier=verifier)
    back = _authorize(served, url, person)
    assert back.startswith(REDIRECT), back
    if "error=" in back:
        return oauth, re.search(r"error=([a-z_]+)", back).group(1)
    return oauth, oauth.fetch_token(
        f"{served}/oauth/token", authorization_response=back, code_verifier=verifier
    )


@pytest.mark.parametrize("scope", PRIVILEGED)
def test_authorization_code_roles_narrow(
    served: str, developer_everything: dict[str, str], scope: str
) -> None:
    _, token = _code_flow(served, developer_everything, f"openid share:read {scope}")
    assert isinstance(token, dict) and set(token["scope"].split()) == {"openid", "share:read"}
    _, refused = _code_flow(served, developer_everything, scope)
    assert refused == "invalid_scope"


@pytest.mark.parametrize("scope", PRIVILEGED)
def test_authorization_code_client_narrows(
    served: str, admin_narrow_client: dict[str, str], scope: str
) -> None:
    _, token = _code_flow(served, admin_narrow_client, f"share:read {scope}")
    assert isinstance(token, dict) and token["scope"] == "share:read"
    _, refused = _code_flow(served, admin_narrow_client, scope)
    assert refused == "invalid_scope"


@pytest.mark.parametrize("scope", PRIVILEGED)
def test_refresh_never_wider_than_the_original(
    served: str, developer_everything: dict[str, str], token_url: str, scope: str
) -> None:
    _, token = _code_flow(served, developer_everything, "share:read")
    assert isinstance(token, dict) and token["scope"] == "share:read"
    auth = (developer_everything["client_id"], developer_everything["client_secret"])
    r = httpx.post(
        token_url,
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "scope": scope},
        auth=auth,
    )
    _refused(r)


def test_refresh_narrows_when_a_person_is_demoted(served: str, demo_env: Any, token_url: str) -> None:
    steward = _person(demo_env, ["steward"], ["share:read", "catalog:write", "grants:approve"])
    oauth, token = _code_flow(served, steward, "share:read catalog:write")
    assert isinstance(token, dict) and set(token["scope"].split()) == {"share:read", "catalog:write"}
    on_db(demo_env, lambda e: UserService(e).update(steward["username"], roles=["developer"]))
    rotated = oauth.refresh_token(token_url, refresh_token=token["refresh_token"])
    assert rotated["scope"] == "share:read"
    # asking again for what the person no longer may have
    auth = (steward["client_id"], steward["client_secret"])
    r = httpx.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": rotated["refresh_token"],
            "scope": "catalog:write",
        },
        auth=auth,
    )
    _refused(r)
