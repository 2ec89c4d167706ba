"""Search with facets (gateway.portal.search): jieba-segmented full text over names, descriptions,
信息项 and keywords; facet counts; sorting; stable URLs; the .json twin; the same rule for CKAN's q;
and the page in a real browser: search 空气 → facet by department → dataset → download CSV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.portal.search import words
from tests.browser import chromium
from tests.support import serve


@pytest.fixture(scope="module")
def app(demo_env: Any) -> Iterator[TestClient]:
    with TestClient(create_app(demo_env.settings)) as c:
        yield c


def _search(c: TestClient, **params: str) -> dict[str, Any]:
    r = c.get("/explore.json", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _codes(doc: dict[str, Any]) -> list[str]:
    return [r["code"] for r in doc["results"]]


def test_jieba_splits_a_query_into_words() -> None:
    assert words("空气质量数据") == ["空气质量"]  # 数据 is a stopword here: every dataset is data
    assert "物业" in words("物业 管理")


def test_words_find_datasets_by_name_field_and_compound(app: TestClient) -> None:
    assert _codes(_search(app, q="空气")) == ["air_quality_daily"]
    assert _codes(_search(app, q="空气质量数据")) == ["air_quality_daily"]  # no such phrase: its words
    assert _codes(_search(app, q="PM2.5")) == ["air_quality_daily"]  # a 信息项
    assert "enterprise_registration" in _codes(_search(app, q="法定代表人"))
    assert _search(app, q="物业")["count"] == 0  # names of companies are rows, not catalogue text
    assert _search(app, q="人口")["count"] == 0  # 不予开放: not searchable, not even by name
    assert _search(app, q="联系电话")["count"] == 0  # a hidden field is not a search term either
    assert _search(app)["count"] == 4


def test_facets_counts_and_stable_urls(app: TestClient) -> None:
    doc = _search(app)
    dept = {f["value"]: f for f in doc["facets"]["dept"]}
    assert dept["eco"]["count"] == 2 and dept["eco"]["label"] == "省生态环境厅"
    assert dept["eco"]["url"] == "/explore?dept=eco"
    eco = _search(app, dept="eco")
    assert set(_codes(eco)) == {"air_quality_daily", "discharge_permit"}
    chosen = {f["value"]: f for f in eco["facets"]["dept"]}
    assert chosen["eco"]["selected"] and chosen["eco"]["url"] == "/explore"  # the link that unselects
    assert chosen["samr"]["count"] == 1  # a facet's own counts ignore its own choice
    both = _search(app, q="许可", dept="eco")
    assert _codes(both) == ["discharge_permit"] and both["url"] == "/explore?q=%E8%AE%B8%E5%8F%AF&dept=eco"
    themes = {f["value"]: f["count"] for f in doc["facets"]["theme"]}
    assert themes == {"生态环境": 2, "市场主体": 1, "信用": 1}
    opens = {f["value"]: f["count"] for f in doc["facets"]["open"]}
    assert opens == {"unconditional": 3, "conditional": 1}
    assert {f["label"] for f in doc["facets"]["cycle"]} <= {"每日", "每月", "每年", "实时", "每周", "不定期"}
    by_code = {d["code"]: d["resourceCode"] for d in app.get("/explore/api/catalogue").json()["datasets"]}
    assert _codes(_search(app, sort="name")) == sorted(by_code, key=by_code.__getitem__)
    assert app.get("/explore.json", params={"sort": "popularity"}).status_code == 400


def test_ckan_q_uses_the_same_rule(app: TestClient) -> None:
    r = app.get("/api/3/action/package_search", params={"q": "空气质量数据"}).json()
    assert [p["name"] for p in r["result"]["results"]] == ["air_quality_daily"]


@pytest.mark.browser
@pytest.mark.parametrize("demo_env", ["sqlite"], indirect=True)
def test_search_facet_dataset_download_in_a_browser(demo_env: Any) -> None:
    from playwright.sync_api import expect

    with serve(demo_env) as base, chromium() as browser:
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{base}/explore")
        expect(page.locator("#datasets > li")).to_have_count(4)
        page.fill("#search-q", "许可")
        page.click("#search button[type=submit]")
        expect(page.locator("#datasets > li")).to_have_count(1)
        assert page.url.startswith(f"{base}/explore?q=")
        expect(page.locator("#search-summary")).to_contain_text("找到 1 个数据集")
        page.goto(f"{base}/explore")
        page.click("#facets a[data-facet=dept][data-value=eco]")
        expect(page.locator("#datasets > li")).to_have_count(2)
        assert page.url == f"{base}/explore?dept=eco"
        page.click("#datasets a[href='/explore/datasets/air_quality_daily']")
        expect(page.locator("#status")).to_contain_text("第 1 页")
        href = page.locator("#download-links a[data-format=csv]").get_attribute("href") or ""
        with page.expect_download() as info:
            page.click("#download-links a[data-format=csv]")
        body = Path(info.value.path()).read_bytes()
        assert body.startswith(b"\xef\xbb\xbf") and href == "/open/download/air_quality_daily.csv"
        total = httpx.post(f"{base}/open/graphql", json={"query": "{ airQualityDaily { totalCount } }"})
        assert (
            len(body.decode("utf-8-sig").splitlines())
            == total.json()["data"]["airQualityDaily"]["totalCount"] + 1
        )
        # 有条件开放: the page shows the download command with the API key header
        page.goto(f"{base}/explore/datasets/tax_credit_rating")
        expect(page.locator("#download-key")).to_contain_text("X-API-Key")
        expect(page.locator("#download-key")).to_contain_text("/open/download/tax_credit_rating.csv")
        assert not problems, problems


def test_sort_by_use_follows_the_usage_rollup(app: TestClient, demo_env: Any) -> None:
    """`sort=used`: most calls plus downloads over 30 days first (ties by resource code), each
    result saying its figure; three more calls of one dataset move its figure by exactly three."""
    from tests.conftest import gql
    from tests.portal.test_stats import _roll_up

    _roll_up(demo_env)
    before = _search(app, sort="used")
    by_code = {d["code"]: d["resourceCode"] for d in app.get("/explore/api/catalogue").json()["datasets"]}
    order = sorted(before["results"], key=lambda r: (-r["used"], by_code[r["code"]]))
    assert _codes(before) == [r["code"] for r in order] and before["query"]["sort"] == "used"
    for _ in range(3):
        r = gql(app, "open", "{ enterpriseRegistration(first: 1) { edges { node { name } } } }")
        assert "errors" not in r.json(), r.text
    _roll_up(demo_env)
    after = {r["code"]: r["used"] for r in _search(app, sort="used")["results"]}
    assert (
        after["enterprise_registration"]
        == next(r["used"] for r in before["results"] if r["code"] == "enterprise_registration") + 3
    )
    assert "used" not in _search(app, sort="name")["results"][0]  # read only when sorting by it
    page = app.get("/explore", params={"sort": "used"})
    assert page.status_code == 200 and "最常使用" in page.text
