"""The CKAN Action API's read part (gateway.portal.ckan), driven by the real `ckanapi` client against a
served gateway, and its envelope and error shapes over plain HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ckanapi
import httpx
import pytest

from tests.support import serve

OPEN = {"enterprise_registration", "tax_credit_rating", "discharge_permit", "air_quality_daily"}
NEVER = ["population", "social_insurance", "legalRepIdNumber", "contactPhone", "taxPaidAmount", "联系电话"]


@pytest.fixture(scope="module")
def base(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as url:
        yield url


@pytest.fixture(scope="module")
def ckan(base: str) -> ckanapi.RemoteCKAN:
    return ckanapi.RemoteCKAN(base, user_agent="shuqiao-tests")


def test_package_list_and_show(ckan: ckanapi.RemoteCKAN, base: str) -> None:
    names = ckan.action.package_list()
    assert set(names) == OPEN
    pkg = ckan.action.package_show(id="air_quality_daily")
    assert pkg["name"] == "air_quality_daily" and "空气" in pkg["title"] and pkg["notes"]
    assert pkg["organization"]["name"] == "eco" and pkg["organization"]["title"] == "省生态环境厅"
    assert pkg["owner_org"] == "eco"
    assert [g["name"] for g in pkg["groups"]] and pkg["metadata_modified"]
    formats = {r["format"]: r["url"] for r in pkg["resources"]}
    assert formats["CSV"] == f"{base}/open/download/air_quality_daily.csv"
    assert formats["GraphQL"] == f"{base}/open/graphql"
    extras = {e["key"]: e["value"] for e in pkg["extras"]}
    assert extras["open_attribute"] == "无条件开放" and extras["resource_code"].startswith("610000-")
    assert extras["update_cycle"] and extras["share_attribute"]
    # the CSV resource really downloads
    r = httpx.get(formats["CSV"])
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")


def test_conditional_datasets_are_listed_with_their_condition(ckan: ckanapi.RemoteCKAN) -> None:
    pkg = ckan.action.package_show(id="tax_credit_rating")
    assert pkg["isopen"] is False
    assert all(r["access_restricted"] and "X-API-Key" in r["description"] for r in pkg["resources"])
    assert httpx.get(pkg["resources"][0]["url"]).status_code == 403


def test_closed_datasets_and_fields_do_not_exist(ckan: ckanapi.RemoteCKAN, base: str) -> None:
    with pytest.raises(ckanapi.NotFound):
        ckan.action.package_show(id="population")
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.package_show()
    everything = httpx.get(f"{base}/api/3/action/package_search", params={"rows": 1000}).text
    for word in NEVER:
        assert word not in everything, word


def test_package_search(ckan: ckanapi.RemoteCKAN) -> None:
    assert ckan.action.package_search()["count"] == len(OPEN)
    eco = ckan.action.package_search(fq="organization:eco", facet_field=None)
    assert eco["count"] == 2 and {p["name"] for p in eco["results"]} == {
        "discharge_permit",
        "air_quality_daily",
    }
    air = ckan.action.package_search(q="空气")
    assert [p["name"] for p in air["results"]] == ["air_quality_daily"]
    assert ckan.action.package_search(q="空气", fq="organization:samr")["count"] == 0
    assert ckan.action.package_search(fq="res_format:CSV")["count"] == len(OPEN)
    assert ckan.action.package_search(fq="-organization:eco")["count"] == len(OPEN) - 2
    page = ckan.action.package_search(sort="name asc", rows=2, start=1)
    assert page["count"] == len(OPEN) and [p["name"] for p in page["results"]] == sorted(OPEN)[1:3]
    faceted = ckan.action.package_search(**{"facet.field": ["organization", "groups"]})
    assert faceted["facets"]["organization"]["eco"] == 2
    assert sum(faceted["facets"]["groups"].values()) == len(OPEN)
    with pytest.raises(ckanapi.SearchQueryError):
        ckan.action.package_search(fq="secret_field:x")
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.package_search(rows="many")


def test_what_ckanext_harvest_sends(ckan: ckanapi.RemoteCKAN) -> None:
    """Its CKAN harvester pages by `sort=id asc`, ORs organisations in parentheses and asks for
    what changed since its last run with a `metadata_modified` range."""
    both = ckan.action.package_search(fq="(organization:eco OR organization:samr)", sort="id asc", rows=2)
    assert both["count"] == 3 and [p["id"] for p in both["results"]] == [
        "air_quality_daily",
        "discharge_permit",
    ]
    rest = ckan.action.package_search(
        fq="(organization:eco OR organization:samr)", sort="id asc", rows=2, start=2
    )
    assert [p["id"] for p in rest["results"]] == ["enterprise_registration"]
    since = ckan.action.package_search(fq="metadata_modified:[2000-01-01T00:00:00Z TO *]", rows=100)
    assert since["count"] == len(OPEN)
    assert ckan.action.package_search(fq="metadata_modified:[2999-01-01T00:00:00Z TO *]")["count"] == 0
    assert ckan.action.package_search(fq="+dataset_type:dataset")["count"] == len(OPEN)
    assert ckan.action.organization_show(id="eco")["package_count"] == 2
    assert ckan.action.group_show(id="base")["title"] == "基础库"
    with pytest.raises(ckanapi.NotFound):
        ckan.action.organization_show(id="police")  # opens nothing: not an organisation here
    with pytest.raises(ckanapi.SearchQueryError):
        ckan.action.package_search(fq="metadata_modified:[NOW-1DAY TO *]")


def test_organizations_groups_status(ckan: ckanapi.RemoteCKAN) -> None:
    assert ckan.action.organization_list() == ["eco", "samr", "tax"]
    orgs = {o["name"]: o for o in ckan.action.organization_list(all_fields=True)}
    assert orgs["eco"]["package_count"] == 2 and orgs["samr"]["title"] == "省市场监督管理局"
    assert "police" not in orgs and "hrss" not in orgs  # they open nothing
    groups = ckan.action.group_list(all_fields=True)
    assert sum(g["package_count"] for g in groups) == len(OPEN)
    assert {g["title"] for g in groups} <= {"基础库", "主题库", "专题库"}
    status = ckan.action.status_show()
    assert status["ckan_version"].startswith("2.") and status["site_title"]


def test_envelope_and_errors_over_http_on_both_prefixes(base: str) -> None:
    for prefix in ("/api/3/action", "/api/action"):
        ok = httpx.get(f"{base}{prefix}/package_list").json()
        assert (
            ok["success"] is True and set(ok["result"]) == OPEN and ok["help"].endswith("name=package_list")
        )
        missing = httpx.get(f"{base}{prefix}/package_show", params={"id": "nope"})
        assert missing.status_code == 404
        assert missing.json()["success"] is False
        assert missing.json()["error"] == {"__type": "Not Found Error", "message": "Not found"}
        unknown = httpx.get(f"{base}{prefix}/package_create")
        assert unknown.status_code == 400 and unknown.json()["error"]["__type"] == "Bad request"
    posted = httpx.post(f"{base}/api/3/action/package_show", json={"id": "discharge_permit"}).json()
    assert posted["result"]["name"] == "discharge_permit"
