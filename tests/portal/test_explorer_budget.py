"""The explorer page's own budget (gateway.portal.budget): its catalogue and preview calls never use
up the visitor's anonymous API allowance, and run out on their own with a 429 the page explains."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import gql

Q = "{ airQualityDaily(first: 2) { totalCount edges { node { city aqi } } } }"


def _preview(c: TestClient) -> Any:
    return c.post("/explore/api/graphql", json={"query": Q}, headers={"Accept": "application/json"})


def test_the_pages_requests_do_not_count_against_the_api_allowance(demo_env: Any) -> None:
    settings = dataclasses.replace(demo_env.settings, anonymous_rate="2/minute", explorer_rate="1000/minute")
    with TestClient(create_app(settings)) as c:
        assert [c.get("/explore/api/catalogue").status_code for _ in range(5)] == [200] * 5
        previews = [_preview(c) for _ in range(5)]
        assert [r.status_code for r in previews] == [200] * 5
        # the same answer as the public endpoint: same schema, executor and policies
        assert previews[0].json() == gql(c, "open", Q, accept="application/json").json()
        # the API allowance is intact: one call of its two was just used
        assert [gql(c, "open", Q).status_code for _ in range(2)] == [200, 429]
        assert c.get("/explore/api/catalogue").status_code == 200  # and the page still loads


def test_the_page_budget_runs_out_on_its_own_with_retry_after(demo_env: Any) -> None:
    settings = dataclasses.replace(demo_env.settings, explorer_rate="3/minute", anonymous_rate="100/minute")
    with TestClient(create_app(settings)) as c:
        got = [c.get("/explore/api/catalogue").status_code, _preview(c).status_code]
        got += [_preview(c).status_code, c.get("/explore/api/catalogue").status_code]
        assert got == [200, 200, 200, 429]
        r = _preview(c)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert gql(c, "open", Q).status_code == 200  # the API is not affected


def test_the_pages_explain_a_429_in_chinese_with_the_wait(demo_env: Any) -> None:
    settings = dataclasses.replace(demo_env.settings, explorer_rate="1/minute", anonymous_rate="100/minute")
    with TestClient(create_app(settings)) as c:
        assert c.get("/explore").status_code == 200
        for path in ("/explore", "/explore/datasets/air_quality_daily"):
            r = c.get(path)
            assert r.status_code == 429 and r.headers["content-type"].startswith("text/html")
            wait = int(r.headers["Retry-After"])
            assert f"访问过于频繁：本页的访问额度已用完，请在 {wait} 秒后重试。" in r.text
        english = c.get("/explore", params={"lang": "en"})
        assert english.status_code == 429 and "Too many requests" in english.text
        assert gql(c, "open", Q).status_code == 200  # the API is not affected
