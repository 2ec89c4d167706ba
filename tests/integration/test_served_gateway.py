"""End to end over real HTTP: `uvicorn asgi:app` as a separate process, a token from
/oauth/token through Authlib's OAuth 2.0 client, and queries on both tiers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from tests.support import fan_out, serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base


def test_client_credentials_with_authlib_then_share_query(served: str, demo_env: Any) -> None:
    creds = demo_env.credentials["clients"]["samr"]
    meta = httpx.get(f"{served}/.well-known/openid-configuration").json()
    with OAuth2Client(creds["client_id"], creds["client_secret"], scope="share:read") as oauth:
        token = oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        assert token["token_type"].lower() == "bearer" and token["expires_in"] > 0
        r = oauth.post(
            f"{served}/share/graphql",
            json={"query": "{ enterpriseRegistration(first: 2) { edges { node { contactPhone } } } }"},
        )
    assert r.status_code == 200
    phones = [e["node"]["contactPhone"] for e in r.json()["data"]["enterpriseRegistration"]["edges"]]
    assert all(p and "*" not in p for p in phones)  # samr is the provider: clear
    keys = httpx.get(meta["jwks_uri"]).json()["keys"]
    assert keys and all("d" not in k for k in keys)  # never the private part


def test_client_secret_post_and_wrong_secret(served: str, demo_env: Any) -> None:
    creds = demo_env.credentials["clients"]["hrss"]
    with OAuth2Client(
        creds["client_id"], creds["client_secret"], token_endpoint_auth_method="client_secret_post"
    ) as oauth:
        assert oauth.fetch_token(f"{served}/oauth/token", grant_type="client_credentials")["access_token"]
    with OAuth2Client(creds["client_id"], "not-the-secret") as oauth, pytest.raises(Exception) as err:
        oauth.fetch_token(f"{served}/oauth/token", grant_type="client_credentials")
    assert "invalid_client" in str(err.value)


def test_open_tier_over_http(served: str) -> None:
    r = httpx.post(
        f"{served}/open/graphql",
        json={"query": "{ airQualityDaily(first: 3) { edges { node { city aqi } } } }"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert "西安" in r.text or "市" in r.text  # UTF-8 Chinese text, not \\u escapes


def test_fragment_fan_out_is_refused_while_healthz_answers(served: str) -> None:
    """21, 29 and 40 deep fan-outs (each a kilobyte or two) alongside /healthz: all answered
    within httpx's default timeout — before, the 29-deep one held the event loop for minutes."""
    from concurrent.futures import ThreadPoolExecutor

    accept = {"Accept": "application/graphql-response+json"}
    with ThreadPoolExecutor(6) as pool:
        bombs = [
            pool.submit(httpx.post, f"{served}/open/graphql", json={"query": fan_out(d)}, headers=accept)
            for d in (21, 29, 40)
        ]
        health = [pool.submit(httpx.get, f"{served}/healthz") for _ in range(3)]
        for f in bombs:
            r = f.result()
            assert r.status_code == 400 and r.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert all(f.result().json() == {"status": "ok"} for f in health)
