"""The portal's server-rendered pages (gateway.portal.pages): the catalogue gives the same results as
/explore.json with facets, sort and paging; the dataset page shows its metadata, a preview run by
the open tier's own executor, charts aggregated over the whole dataset in the database (only over
fields the public may read in clear), and the GraphQL/curl for what is on screen; Chinese first with
English; every page on the page's own budget and audited."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from catalogue.spec import DatasetSpec, FieldSpec, FieldType
from gateway.app import create_app
from gateway.portal import charts, i18n, pages
from policies.model import PI, Category, MaskRule, Open, Share
from tests.conftest import gql
from tests.support import on_db

NEVER = [
    "legalRepIdNumber",
    "法定代表人身份证号",
    "contactPhone",
    "联系电话",
    "taxPaidAmount",
    "年度纳税额",
    "人口基础信息",
    "社会保险参保缴费信息",
    "idNumber",
]
TEMPLATES = Path(pages.__file__).resolve().parents[1] / "templates" / "portal"


@pytest.fixture(scope="module")
def app(demo_env: Any) -> Iterator[TestClient]:
    with TestClient(create_app(demo_env.settings)) as c:
        yield c


def _codes(html: str) -> list[str]:
    return re.findall(r'<li data-code="([a-z_]+)">', html)


def _twin(c: TestClient, code: str, **params: str) -> dict[str, Any]:
    r = c.get(f"/explore/datasets/{code}.json", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_every_message_has_both_languages_and_every_key_used_exists() -> None:
    assert all(len(v) == 2 and all(v) for v in i18n.MESSAGES.values())
    call = re.compile(r"""(?<![\w.])t\(["']([a-z_]+\.[a-z_.]*[a-z_])["']""")  # t("key"), not t("prefix." ~ x)
    used = set()
    for source in [*TEMPLATES.glob("*.html"), Path(pages.__file__)]:
        used |= set(call.findall(source.read_text()))
    assert len(used) > 50 and used <= set(i18n.MESSAGES), used - set(i18n.MESSAGES)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": "空气"},
        {"dept": "eco"},
        {"q": "许可", "dept": "eco"},
        {"sort": "name"},
        {"open": "conditional"},
    ],
)
def test_the_catalogue_page_lists_what_the_json_twin_finds(app: TestClient, params: dict[str, str]) -> None:
    page = app.get("/explore", params=params)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    twin = app.get("/explore.json", params=params).json()
    assert _codes(page.text) == [r["code"] for r in twin["results"]]
    for facet in twin["facets"].values():
        for item in facet:  # every facet value with its count and the URL that toggles it
            assert f'href="{item["url"].replace("&", "&amp;")}"' in page.text
            assert f"({item['count']})" in page.text
    assert f"找到 {twin['count']} 个数据集" in page.text


def test_catalogue_pages_and_bad_parameters(app: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "PER_PAGE", 3)
    everything = [r["code"] for r in app.get("/explore.json", params={"sort": "name"}).json()["results"]]
    first = app.get("/explore", params={"sort": "name"}).text
    assert _codes(first) == everything[:3] and "第 1 / 2 页" in first
    assert 'href="/explore?sort=name&amp;page=2"' in first
    second = app.get("/explore", params={"sort": "name", "page": "2"}).text
    assert _codes(second) == everything[3:] and 'href="/explore?sort=name"' in second
    assert app.get("/explore", params={"sort": "popularity"}).status_code == 400
    assert app.get("/explore", params={"page": "x"}).status_code == 400


def test_english_with_the_cookie_remembering_the_choice(demo_env: Any) -> None:
    with TestClient(create_app(demo_env.settings)) as c:
        zh = c.get("/explore")
        assert '<html lang="zh-CN">' in zh.text and "开放目录" in zh.text
        en = c.get("/explore", params={"lang": "en"})
        assert '<html lang="en">' in en.text and "Open-data catalogue" in en.text
        assert "shuqiao_lang=en" in en.headers["set-cookie"]
        later = c.get("/explore/datasets/air_quality_daily")  # the cookie, no parameter
        assert '<html lang="en">' in later.text and "Daily city air quality" in later.text
        assert "Provincial Department of Ecology and Environment" in later.text
        assert '<html lang="zh-CN">' in c.get("/explore", params={"lang": "zh"}).text


def test_the_dataset_page_shows_metadata_and_only_what_the_open_schema_has(app: TestClient) -> None:
    for code in ("enterprise_registration", "air_quality_daily", "discharge_permit", "tax_credit_rating"):
        r = app.get(f"/explore/datasets/{code}")
        assert r.status_code == 200, r.text
        for word in NEVER:
            assert word not in r.text, (code, word)
        assert "许可协议" in r.text and "数据条数" in r.text and "首次发布" in r.text and "最近更新" in r.text
        twin = app.get(f"/explore/datasets/{code}.json").text  # the machine twin says no more
        assert not [word for word in NEVER if word in twin], code
    er = app.get("/explore/datasets/enterprise_registration").text
    assert "610000-SAMR-000001" in er and "法人（统一社会信用代码） · creditCode" in er
    assert "legalRepresentative" in er  # personal, but open by law
    meta = _twin(app, "enterprise_registration")["metadata"]
    total = gql(app, "open", "{ enterpriseRegistration { totalCount } }").json()
    assert meta["rowCount"] == total["data"]["enterpriseRegistration"]["totalCount"]
    assert meta["entity"] == {"entity": "legal_entity", "key": "creditCode"}
    assert (
        meta["department"] == {"code": "samr", "name": "省市场监督管理局"}
        and meta["openAttribute"] == "unconditional"
    )
    for closed in ("population", "social_insurance", "nope"):
        assert app.get(f"/explore/datasets/{closed}").status_code == 404
        assert app.get(f"/explore/datasets/{closed}.json").status_code == 404


def test_the_preview_is_the_open_tiers_answer_to_the_query_shown(app: TestClient) -> None:
    params = {"field": "city", "op": "eq", "value": "西安市", "order": "DATE", "dir": "DESC", "size": "10"}
    twin = _twin(app, "air_quality_daily", **params)
    shown = twin["preview"]
    direct = gql(app, "open", shown["query"], variables=shown["variables"], accept="application/json").json()
    assert direct["data"]["airQualityDaily"] == shown["data"]["airQualityDaily"]
    nodes = [e["node"] for e in shown["data"]["airQualityDaily"]["edges"]]
    assert len(nodes) == 10 and {n["city"] for n in nodes} == {"西安市"}
    assert [n["date"] for n in nodes] == sorted((n["date"] for n in nodes), reverse=True)
    # the HTML shows the same rows, the same query and a curl that sends it
    page = app.get("/explore/datasets/air_quality_daily", params=params).text
    assert nodes[0]["date"] in page and "共 366 条" in page
    assert "query Preview(" in page and "curl -s" in page and "/open/graphql" in page
    href = re.search(r'href="(/graphiql\?[^"]+)" id="workbench-link"', page)
    assert href and href.group(1)
    q = parse_qs(urlparse(href.group(1).replace("&amp;", "&")).query)
    assert q["query"] == [shown["query"]] and orjson.loads(q["variables"][0]) == shown["variables"]
    # next page: the cursor of this one, and the page after follows on exactly
    nxt = twin["preview"]["next"]
    assert nxt and "pages=" in nxt
    second = app.get(nxt.replace("http://testserver", "")).json()["preview"]
    assert second["variables"]["after"] == shown["data"]["airQualityDaily"]["pageInfo"]["endCursor"]
    assert second["data"]["airQualityDaily"]["edges"][0]["node"]["date"] < nodes[-1]["date"]


def test_a_filter_the_public_may_not_use_is_not_run(app: TestClient) -> None:
    r = app.get("/explore/datasets/enterprise_registration", params={"field": "contactPhone", "value": "1"})
    assert r.status_code == 400 and "BAD_REQUEST" in r.text and "联系电话" not in r.text
    r = app.get("/explore/datasets/air_quality_daily", params={"field": "aqi", "op": "prefix", "value": "1"})
    assert r.status_code == 400 and "prefix" in r.text
    r = app.get("/explore/datasets/air_quality_daily", params={"field": "aqi", "op": "gt", "value": "abc"})
    assert r.status_code == 400  # the executor's own coercion error, shown


def test_conditionally_open_explains_the_key_and_links_to_apply(app: TestClient) -> None:
    page = app.get("/explore/datasets/tax_credit_rating").text
    assert 'id="apikey-notice"' in page and "X-API-Key" in page
    assert 'href="/enterprise/apply?dataset=tax_credit_rating"' in page
    assert "[FORBIDDEN]" in page and 'id="rows"' not in page  # the API's refusal, as text
    assert 'id="chart-none"' in page  # nothing aggregated for the public
    assert "curl -OJ -H &#39;X-API-Key:" in page


def test_charts_cover_the_whole_dataset(app: TestClient) -> None:
    doc = _twin(app, "air_quality_daily")
    total = gql(app, "open", "{ airQualityDaily { totalCount } }").json()["data"]["airQualityDaily"][
        "totalCount"
    ]
    series = doc["charts"]["series"]["points"]
    assert sum(n for _, n, _ in series) == total and len(series) == 366  # every day, not one page
    groups = doc["charts"]["groups"]["points"]
    assert sum(n for _, n, _ in groups) == total and len(groups) == 11  # the cities
    assert doc["charts"]["measure"] == "aqi"
    # the averages are the data's: Xi'an's mean AQI over the year from the download equals the chart's
    rows = app.get("/open/download/air_quality_daily.jsonl", params={"where": '{"city":{"eq":"西安市"}}'})
    aqis = [orjson.loads(line)["aqi"] for line in rows.text.splitlines()]
    xian = next(v for label, _, v in groups if label == "西安市")
    assert xian == f"{sum(aqis) / len(aqis):,.1f}"
    counted = _twin(app, "enterprise_registration", measure="count")["charts"]
    assert counted["measure"] == "count" and "groups" in counted and "series" in counted
    page = app.get("/explore/datasets/air_quality_daily").text
    assert (
        'id="chart-series" role="img"' in page and 'id="table-series"' in page and 'id="table-groups"' in page
    )


def _ds(*fields: FieldSpec, open_: Open = Open.UNCONDITIONAL) -> DatasetSpec:
    return DatasetSpec(
        "t", "610000-T-000001", "测试", "Test", "d", Category.THEME, Share.UNCONDITIONAL, open_, fields
    )


def test_charts_use_only_fields_the_public_reads_in_clear() -> None:
    day = FieldSpec("day", FieldType.DATE, "日期")
    district = FieldSpec("district", FieldType.STRING, "所在区县")
    amount = FieldSpec("amount", FieldType.DECIMAL, "金额")
    plan = charts.plan_charts(_ds(day, district, amount), ["day", "district", "amount"])
    assert plan is not None and (plan.time, plan.district, plan.measure) == (day, district, amount)
    # masked (personal, opened with a mask), absent from the open schema, or not open at all
    masked = FieldSpec(
        "district", FieldType.STRING, "所在区县", pi=PI.PERSONAL, open_personal=True, mask=MaskRule.ADDRESS
    )
    plan = charts.plan_charts(_ds(day, masked, amount), ["day", "district", "amount"])
    assert plan is not None and plan.district is None
    plan = charts.plan_charts(_ds(day, district, amount), ["day", "district"])  # amount not in the schema
    assert plan is not None and plan.measure is None and plan.measures == ()
    closed = FieldSpec("amount", FieldType.DECIMAL, "金额", open=Open.NONE)
    plan = charts.plan_charts(_ds(day, district, closed), ["day", "district", "amount"])
    assert plan is not None and plan.measures == ()
    assert charts.plan_charts(_ds(day, district, open_=Open.CONDITIONAL), ["day", "district"]) is None
    assert charts.plan_charts(_ds(amount), ["amount"]) is None  # nothing to chart against


def test_pages_use_the_pages_budget_and_are_audited(demo_env: Any) -> None:
    settings = dataclasses.replace(demo_env.settings, anonymous_rate="1/minute", explorer_rate="1000/minute")
    with TestClient(create_app(settings)) as c:
        for _ in range(3):
            assert c.get("/explore").status_code == 200
            r = c.get("/explore/datasets/air_quality_daily", headers={"X-Request-ID": "page-audit-1"})
            assert r.status_code == 200
        assert gql(c, "open", "{ airQualityDaily(first: 1) { totalCount } }").status_code == 200  # untouched

    async def find(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT operation_name, status, detail FROM audit_event WHERE request_id = :rid"),
                {"rid": "page-audit-1"},
            )
            return [tuple(row) for row in rows]

    events = on_db(demo_env, find)
    assert events and all(e[0] == "Preview" and e[1] == 200 for e in events)
    detail = orjson.loads(events[0][2])
    assert any(r.get("aggregate") == ["date", "city", "aqi"] for r in detail["reads"]), detail
    assert {("air_quality_daily", "aqi"), ("air_quality_daily", "city")} <= {
        (f["dataset"], f["field"]) for f in detail["fields"]
    }
    settings = dataclasses.replace(demo_env.settings, explorer_rate="2/minute")
    with TestClient(create_app(settings)) as c:
        got = [c.get("/explore").status_code for _ in range(2)]
        r = c.get("/explore/datasets/air_quality_daily")
        assert got == [200, 200] and r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "访问过于频繁：本页的访问额度已用完" in r.text


def test_usage_is_linked_only_when_the_gateway_serves_statistics(demo_env: Any) -> None:
    with TestClient(create_app(demo_env.settings)) as c:
        page = c.get("/explore/datasets/air_quality_daily").text
        assert 'data-stats="/stats/datasets/air_quality_daily.json"' in page and 'href="/stats"' in page
        usage = c.get("/stats/datasets/air_quality_daily.json").json()  # what the page's script reads
        assert usage["dataset"] == "air_quality_daily" and {"date", "calls", "downloads"} <= set(
            usage["days"][0]
        )

    app = create_app(demo_env.settings)  # a gateway without the statistics: nothing to link to
    app.router.routes[:] = [r for r in app.router.routes if not getattr(r, "path", "").startswith("/stats")]
    with TestClient(app) as c:
        page = c.get("/explore/datasets/air_quality_daily").text
        assert 'id="usage"' not in page and 'href="/stats"' not in page
