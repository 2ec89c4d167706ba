"""The open-data explorer's catalogue (/explore/api/catalogue) and page routes, on SQLite and PostgreSQL.

The catalogue must list exactly what the anonymous open schema exposes — the demo's four open datasets,
never a 不予开放 dataset (social_insurance, population), never a field the public may not see
(法定代表人身份证号, 联系电话, 年度纳税额, the legalRep entity link) — and must follow a catalogue change
without a restart, like /open/graphql does."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from catalogue import service
from catalogue.service import Catalogue
from catalogue.spec import DatasetSpec, DepartmentSpec, FieldSpec, FieldType
from gateway.app import build_state, create_app
from gateway.explorer import API_KEY_HEADER, STATIC, open_catalogue
from gateway.registry import BuiltSchema
from policies.limits import Limits
from policies.model import PI, Category, Level, MaskRule, Open, Share, Tier
from schema.build import build_tier_schema
from tests.conftest import gql
from tests.support import on_db

OPEN_DATASETS = {"enterprise_registration", "tax_credit_rating", "discharge_permit", "air_quality_daily"}
# Never in the catalogue, in any spelling: restricted fields of open datasets and the closed datasets.
FORBIDDEN_TEXT = [
    "legalRepIdNumber",
    "legal_rep_id_number",
    "法定代表人身份证号",
    'legalRep"',
    "contactPhone",
    "contact_phone",
    "联系电话",
    "taxPaidAmount",
    "tax_paid_amount",
    "年度纳税额",
    "social_insurance",
    "socialInsurance",
    "社会保险参保缴费信息",
    "610000-HRSS",
    "population",
    "人口基础信息",
    "610000-POLICE",
    "idNumber",
    "公民身份号码",
]


@pytest.fixture(scope="module")
def explorer(demo_env: Any) -> Iterator[TestClient]:
    """An app of its own: its anonymous rate limit is not shared with the session's client."""
    with TestClient(create_app(demo_env.settings)) as c:
        yield c


def _catalogue(client: TestClient, **headers: str) -> tuple[dict[str, Any], bytes]:
    r = client.get("/explore/api/catalogue", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json(), r.content


def test_lists_exactly_the_open_datasets_with_their_public_metadata(explorer: TestClient) -> None:
    doc, raw = _catalogue(explorer)
    assert doc["endpoint"] == "/open/graphql" and doc["apiKeyHeader"] == "X-API-Key"
    by_code = {d["code"]: d for d in doc["datasets"]}
    assert set(by_code) == OPEN_DATASETS
    er = by_code["enterprise_registration"]
    assert {
        k: er[k]
        for k in (
            "rootField",
            "name",
            "resourceCode",
            "department",
            "category",
            "updateCycle",
            "openAttribute",
            "conditional",
            "whereType",
        )
    } == {
        "rootField": "enterpriseRegistration",
        "name": "企业登记信息",
        "resourceCode": "610000-SAMR-000001",
        "department": "省市场监督管理局",
        "category": "基础库",
        "updateCycle": "每日",
        "openAttribute": "无条件开放",
        "conditional": False,
        "whereType": "EnterpriseRegistrationWhere",
    }
    tax = by_code["tax_credit_rating"]
    assert (tax["openAttribute"], tax["conditional"], tax["updateCycle"]) == ("有条件开放", True, "每年")
    fields = {f["name"]: f for f in er["fields"]}
    assert fields["legalRepresentative"]["title"] == "法定代表人"  # personal, opened by law
    assert fields["registeredCapital"]["type"] == "Decimal"
    assert fields["name"]["operators"][:2] == ["eq", "neq"] and "prefix" in fields["name"]["operators"]
    assert fields["establishmentDate"]["orderBy"] == "ESTABLISHMENT_DATE"
    assert er["orderByType"] == "[EnterpriseRegistrationOrderBy!]"
    text = raw.decode()
    leaked = [t for t in FORBIDDEN_TEXT if t in text]
    assert not leaked, leaked


def test_fields_are_exactly_what_anonymous_introspection_shows(explorer: TestClient) -> None:
    doc, _ = _catalogue(explorer)
    for ds in doc["datasets"]:
        node = ds["rootField"][0].upper() + ds["rootField"][1:]
        q = f'{{ __type(name: "{node}") {{ fields {{ name type {{ name kind }} }} }} }}'
        t = gql(explorer, "open", q)
        scalars = {f["name"] for f in t.json()["data"]["__type"]["fields"] if f["type"]["kind"] == "SCALAR"}
        assert [f["name"] for f in ds["fields"]] and {f["name"] for f in ds["fields"]} == scalars, ds["code"]


def test_every_listed_field_of_an_open_dataset_can_be_read_anonymously(explorer: TestClient) -> None:
    doc, _ = _catalogue(explorer)
    for ds in doc["datasets"]:
        names = " ".join(f["name"] for f in ds["fields"])
        q = f"{{ {ds['rootField']}(first: 2) {{ edges {{ node {{ {names} }} }} }} }}"
        body = gql(explorer, "open", q)
        errors = body.json().get("errors") or []
        if ds["conditional"]:
            assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"], ds["code"]
        else:
            edges = body.json()["data"][ds["rootField"]]["edges"]
            assert not errors and len(edges) == 2, (ds["code"], errors)


def test_an_api_key_does_not_change_the_catalogue_and_the_advertised_header_works(
    explorer: TestClient, demo_env: Any
) -> None:
    anonymous = _catalogue(explorer)[1]
    key = demo_env.credentials["api_keys"]["demo-bank"]
    assert _catalogue(explorer, **{API_KEY_HEADER: key})[1] == anonymous
    # The header the page tells enterprises to send is the one /open/graphql reads.
    r = gql(
        explorer,
        "open",
        "{ taxCreditRating(first: 1) { totalCount edges { node { rating } } } }",
        headers={API_KEY_HEADER: key},
    )
    assert "errors" not in r.json() and r.json()["data"]["taxCreditRating"]["totalCount"] > 0, r.text


def test_a_reclassified_field_or_closed_dataset_leaves_the_catalogue_without_a_restart(
    explorer: TestClient, demo_env: Any
) -> None:
    def fields(doc: dict[str, Any], code: str) -> set[str]:
        return {f["name"] for d in doc["datasets"] if d["code"] == code for f in d["fields"]}

    assert "pm10" in fields(_catalogue(explorer)[0], "air_quality_daily")
    try:
        on_db(demo_env, lambda e: service.update_field(e, "air_quality_daily", "pm10", open=Open.NONE))
        assert "pm10" not in fields(_catalogue(explorer)[0], "air_quality_daily")
        on_db(demo_env, lambda e: service.set_published(e, "discharge_permit", False))
        assert "discharge_permit" not in {d["code"] for d in _catalogue(explorer)[0]["datasets"]}
    finally:
        on_db(demo_env, lambda e: service.update_field(e, "air_quality_daily", "pm10", open=None))
        on_db(demo_env, lambda e: service.set_published(e, "discharge_permit", True))
    doc = _catalogue(explorer)[0]
    assert "pm10" in fields(doc, "air_quality_daily")
    assert "discharge_permit" in {d["code"] for d in doc["datasets"]}


def test_page_and_assets(explorer: TestClient) -> None:
    r = explorer.get("/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/explore"
    page = explorer.get("/explore")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "公共数据开放" in page.text and "/explore/static/explorer.js" in page.text
    assert explorer.get("/explore/static/explorer.js").headers["content-type"].startswith("text/javascript")
    assert explorer.get("/explore/static/explorer.css").status_code == 200
    assert explorer.get("/explore/static/index.html").status_code == 404
    assert explorer.get("/explore/static/..%2Fexplorer.py").status_code == 404
    # Air-gapped networks: nothing is loaded from anywhere but this gateway, and data never goes in as HTML.
    for asset in STATIC.iterdir():
        body = asset.read_text()
        body = body.replace('"http://www.w3.org/2000/svg"', "")  # the SVG namespace name, not a fetch
        assert "http://" not in body and "https://" not in body and "//cdn" not in body, asset.name
        for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert unsafe not in body, (asset.name, unsafe)


def test_rate_limited_on_the_pages_budget_and_fails_closed_without_the_access_log(demo_env: Any) -> None:
    settings = dataclasses.replace(demo_env.settings, explorer_rate="2/minute")
    with TestClient(create_app(settings)) as c:
        assert [c.get("/explore/api/catalogue").status_code for _ in range(3)] == [200, 200, 429]

    class Broken:
        async def record(self, event: Any) -> None:
            raise OSError("disk full")

    state = build_state(demo_env.settings, access_log=Broken())
    with TestClient(create_app(demo_env.settings, state=state)) as c:
        r = c.get("/explore/api/catalogue")
        assert r.status_code == 503 and r.json()["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
        assert "datasets" not in r.text


def test_each_catalogue_call_is_an_access_event(explorer: TestClient, demo_env: Any) -> None:
    from sqlalchemy import text

    r = explorer.get("/explore/api/catalogue", headers={"X-Request-ID": "explorer-catalogue-audit"})
    assert r.status_code == 200

    async def find(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT tier, principal_kind, operation_name, status FROM audit_event"
                    " WHERE request_id = :rid"
                ),
                {"rid": "explorer-catalogue-audit"},
            )
            return [tuple(row) for row in rows]

    assert on_db(demo_env, find) == [("open", "anonymous", "explorer.catalogue", 200)]


# ---- pure: the derivation itself, on a catalogue built here (no database)


def _field(name: str, **kw: Any) -> FieldSpec:
    return FieldSpec(name, kw.pop("type", FieldType.STRING), kw.pop("title", name), **kw)


def test_derivation_follows_the_policy_matrix_field_by_field() -> None:
    fields = (
        _field("code", title="代码"),
        _field("inner", level=Level.L2, title="内部"),
        _field("secret_level", level=Level.L3, title="三级"),
        _field("top", level=Level.L4, title="四级"),
        _field("closed", open=Open.NONE, title="不开放"),
        _field("person", pi=PI.PERSONAL, title="个人未开放"),
        _field("rep", pi=PI.PERSONAL, open_personal=True, mask=MaskRule.NAME, title="个人脱敏开放"),
        _field("sensitive", pi=PI.SENSITIVE, open_personal=True, title="敏感"),
        _field("count", type=FieldType.INTEGER, title="数量"),
    )

    def ds(code: str, open_: Open, published: bool = True) -> DatasetSpec:
        return DatasetSpec(
            code,
            f"610000-X-{code}",
            f"集{code}",
            "",
            "x",
            Category.THEME,
            Share.UNCONDITIONAL,
            open_,
            fields,
            update_cycle="monthly",
            published=published,
        )

    catalogue = Catalogue(
        1,
        {"x": DepartmentSpec("x", "某厅")},
        {
            "a_open": ds("a_open", Open.UNCONDITIONAL),
            "b_cond": ds("b_cond", Open.CONDITIONAL),
            "c_none": ds("c_none", Open.NONE),
            "d_unpublished": ds("d_unpublished", Open.UNCONDITIONAL, False),
        },
    )
    built = BuiltSchema(build_tier_schema(catalogue, Tier.OPEN), Limits())
    doc = open_catalogue(built, {"x": "某厅"}, 500)
    assert [d["code"] for d in doc["datasets"]] == ["a_open", "b_cond"]
    a = doc["datasets"][0]
    assert (a["department"], a["updateCycle"], a["openAttribute"]) == ("某厅", "每月", "无条件开放")
    got = {f["name"]: f for f in a["fields"]}
    assert set(got) == {"code", "inner", "rep", "count"}
    assert got["rep"]["masked"] is True and got["rep"]["operators"] == []  # masked: no filtering on it
    assert got["rep"]["orderBy"] is None and got["count"]["orderBy"] == "COUNT"  # nor ordering by it
    assert got["count"]["operators"] == ["eq", "neq", "gt", "gte", "lt", "lte"]
    assert got["code"]["masked"] is False and "prefix" in got["code"]["operators"]

    # The share tier, or a department's view, is never listed as the public catalogue.
    with pytest.raises(ValueError):
        open_catalogue(BuiltSchema(build_tier_schema(catalogue, Tier.SHARE, "x"), Limits()), {}, 500)
