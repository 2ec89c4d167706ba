"""CORS beyond the tiers' defaults (tests/portal/test_cors.py): the allow-lists are checked when
the app is made, a refusal of the gateway (429) is still readable cross-origin, preflights are
told apart from plain OPTIONS, and the workbench's pages and twins stay same-origin only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.portal.cors import checked_origins

APP = "https://app.example.cn"


@pytest.mark.parametrize(
    "entry",
    ["app.example.cn", "https://app.example.cn/path", "ftp://app.example.cn", "https://", "https://a b.cn"],
)
def test_an_entry_no_browser_would_send_is_refused_at_start(demo_env: Any, entry: str) -> None:
    with pytest.raises(ValueError, match="SHUQIAO_CORS_OPEN_ORIGINS"):
        create_app(demo_env.settings.with_(cors_open_origins=(entry,)))
    with pytest.raises(ValueError, match="SHUQIAO_CORS_SHARE_ORIGINS"):
        create_app(demo_env.settings.with_(cors_share_origins=(entry,)))


def test_origins_are_compared_as_browsers_send_them() -> None:
    assert checked_origins(
        "X", ("HTTPS://App.Example.CN/", "http://127.0.0.1:8080", "http://[::1]:3000", "*")
    ) == (
        "https://app.example.cn",
        "http://127.0.0.1:8080",
        "http://[::1]:3000",
        "*",
    )


@pytest.fixture(scope="module")
def limited(demo_env: Any) -> Iterator[TestClient]:
    settings = demo_env.settings.with_(
        anonymous_rate="1/minute", cors_open_origins=("*",), cors_share_origins=(APP.upper(),)
    )
    with TestClient(create_app(settings), client=("198.51.100.77", 1)) as c:
        yield c


def test_a_rate_limited_answer_is_readable_cross_origin(limited: TestClient) -> None:
    """A browser app must see the 429 and its Retry-After, not an opaque CORS failure."""
    q = {"query": "{ __typename }"}
    answers = [
        limited.post("/open/graphql", json=q, headers={"Origin": "https://anyone.example"}) for _ in range(2)
    ]
    assert [r.status_code for r in answers] == [200, 429]
    refused = answers[1]
    assert (
        refused.headers["access-control-allow-origin"] == "*"
        and "Retry-After" in refused.headers["access-control-expose-headers"]
    )
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


def test_a_named_share_origin_matches_whatever_case_it_was_configured_in(limited: TestClient) -> None:
    pre = limited.options(
        "/share/graphql",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == APP
    assert pre.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in pre.headers


def test_get_preflight_and_plain_options(limited: TestClient) -> None:
    pre = limited.options(
        "/catalog.jsonld",
        headers={"Origin": "https://anyone.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"
    assert "Origin" in pre.headers["vary"]
    # OPTIONS without Access-Control-Request-Method is no preflight: the app answers it
    plain = limited.options("/open/graphql", headers={"Origin": "https://anyone.example"})
    assert plain.status_code == 405 and "Origin" in plain.headers["vary"]
    # an answer on a covered path varies by Origin even when none was sent (shared caches)
    bare = limited.get("/catalog.ttl")
    assert "Origin" in bare.headers["vary"] and "access-control-allow-origin" not in bare.headers


def test_the_workbench_is_same_origin_only(limited: TestClient) -> None:
    for path in ("/graphiql", "/graphiql/share", "/graphiql/examples.json", "/graphiql/errors.json"):
        r = limited.get(path, headers={"Origin": "https://anyone.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers, path
    pre = limited.options(
        "/graphiql/share/examples.json",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in pre.headers
