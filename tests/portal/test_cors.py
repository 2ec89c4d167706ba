"""CORS per tier (gateway.portal.cors): `*` for anonymous open-tier calls, named origins only on the
share tier (none by default), preflights answered, Vary: Origin, never credentials."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import gql

APP_ORIGIN = "https://app.example.cn"
Q = {"query": "{ airQualityDaily(first: 1) { totalCount } }"}


def _preflight(
    c: TestClient, path: str, origin: str, method: str = "POST", headers: str = "content-type"
) -> Any:
    return c.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


@pytest.fixture(scope="module")
def default(demo_env: Any) -> Iterator[TestClient]:
    with TestClient(create_app(demo_env.settings)) as c:
        yield c


@pytest.fixture(scope="module")
def configured(demo_env: Any) -> Iterator[TestClient]:
    settings = dataclasses.replace(
        demo_env.settings, cors_open_origins=(APP_ORIGIN,), cors_share_origins=(APP_ORIGIN,)
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_open_tier_allows_any_origin_without_credentials(default: TestClient) -> None:
    pre = _preflight(default, "/open/graphql", "https://anyone.example")
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert set(pre.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
    assert "content-type" in pre.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in pre.headers
    assert "Origin" in pre.headers["vary"]
    r = default.post("/open/graphql", json=Q, headers={"Origin": "https://anyone.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "RateLimit" in r.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in r.headers and "Origin" in r.headers["vary"]
    for path in (
        "/open/download/air_quality_daily.csv?limit=1",
        "/catalog.ttl",
        "/api/3/action/package_list",
    ):
        got = default.get(path, headers={"Origin": "https://anyone.example"})
        assert got.status_code == 200 and got.headers["access-control-allow-origin"] == "*", path
    # under `*` an API key may not be sent cross-origin (only a named origin's app may)
    keyed = _preflight(default, "/open/graphql", "https://anyone.example", headers="content-type, x-api-key")
    assert keyed.status_code == 403 and keyed.json()["errors"][0]["extensions"]["code"] == "CORS_NOT_ALLOWED"
    assert _preflight(default, "/open/graphql", "https://anyone.example", method="DELETE").status_code == 403


def test_share_tier_has_no_cors_by_default(default: TestClient, tokens: dict[str, str]) -> None:
    pre = _preflight(default, "/share/graphql", APP_ORIGIN, headers="authorization, content-type")
    assert not any(h.startswith("access-control-") for h in pre.headers)
    r = gql(default, "share", Q["query"], token=tokens["eco"], headers={"Origin": APP_ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_named_origins(configured: TestClient, tokens: dict[str, str]) -> None:
    pre = _preflight(configured, "/share/graphql", APP_ORIGIN, headers="authorization, content-type")
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "authorization" in pre.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in pre.headers
    r = gql(configured, "share", Q["query"], token=tokens["eco"], headers={"Origin": APP_ORIGIN})
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN and "Origin" in r.headers["vary"]
    other = _preflight(configured, "/share/graphql", "https://evil.example", headers="authorization")
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    stray = gql(
        configured, "share", Q["query"], token=tokens["eco"], headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in stray.headers
    # open tier: the named origin may send its API key; others get nothing
    keyed = _preflight(configured, "/open/graphql", APP_ORIGIN, headers="x-api-key, content-type")
    assert keyed.status_code == 204 and keyed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert _preflight(configured, "/open/graphql", "https://evil.example").status_code == 403


def test_the_pages_own_endpoints_and_the_rest_have_no_cors(default: TestClient) -> None:
    for path in ("/explore/api/graphql", "/explore/api/catalogue", "/oauth/token"):
        r = default.get(path, headers={"Origin": "https://anyone.example"})
        assert "access-control-allow-origin" not in r.headers, path


def test_a_wildcard_on_the_share_tier_is_refused(demo_env: Any) -> None:
    with pytest.raises(ValueError, match="share tier"):
        create_app(dataclasses.replace(demo_env.settings, cors_share_origins=("*",)))
