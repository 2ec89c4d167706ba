"""DCAT (gateway.portal.dcat): the catalogue and each dataset as Turtle and JSON-LD, parsed back with
rdflib and checked triple by triple; only what the open tier shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rdflib import RDF, Graph, Literal, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF
from starlette.testclient import TestClient

from gateway.app import create_app

OPEN = {"enterprise_registration", "tax_credit_rating", "discharge_permit", "air_quality_daily"}
NEVER = ["population", "social_insurance", "legalRepIdNumber", "contactPhone", "taxPaidAmount", "联系电话"]
BASE = "http://testserver"  # the demo settings' issuer: the public base URL


@pytest.fixture(scope="module")
def app(demo_env: Any) -> Iterator[TestClient]:
    with TestClient(create_app(demo_env.settings)) as c:
        yield c


def _graph(client: TestClient, path: str, media: str, fmt: str) -> Graph:
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media)
    for word in NEVER:
        assert word not in r.text, word
    return Graph().parse(data=r.text, format=fmt, publicID=BASE)


@pytest.mark.parametrize(
    ("path", "media", "fmt"),
    [("/catalog.ttl", "text/turtle", "turtle"), ("/catalog.jsonld", "application/ld+json", "json-ld")],
)
def test_the_catalogue_parses_back_with_every_open_dataset(
    app: TestClient, path: str, media: str, fmt: str
) -> None:
    g = _graph(app, path, media, fmt)
    (catalog,) = list(g.subjects(RDF.type, DCAT.Catalog))
    datasets = set(g.objects(catalog, DCAT.dataset))
    assert {str(d).rsplit("/", 1)[1] for d in datasets} == OPEN
    assert set(g.subjects(RDF.type, DCAT.Dataset)) == datasets
    assert (catalog, DCTERMS.title, Literal("数桥 公共数据开放目录", lang="zh")) in g
    for ds in datasets:
        titles = [t for t in g.objects(ds, DCTERMS.title) if t.language == "zh"]
        assert titles and g.value(ds, DCTERMS.identifier) is not None
        assert list(g.objects(ds, DCAT.keyword)) and g.value(ds, DCTERMS.modified) is not None
        publisher = g.value(ds, DCTERMS.publisher)
        assert (publisher, RDF.type, FOAF.Organization) in g and g.value(publisher, FOAF.name) is not None
        dists = list(g.objects(ds, DCAT.distribution))
        assert len(dists) == 5 and all((d, RDF.type, DCAT.Distribution) in g for d in dists)
        assert all(g.value(d, DCAT.accessURL) is not None for d in dists)
        downloads = {str(u) for d in dists for u in g.objects(d, DCAT.downloadURL)}
        code = str(ds).rsplit("/", 1)[1]
        assert downloads == {f"{BASE}/open/download/{code}.{f}" for f in ("csv", "xlsx", "json", "jsonl")}


def test_one_dataset_and_its_access_rights(app: TestClient) -> None:
    g = _graph(app, "/explore/datasets/air_quality_daily.ttl", "text/turtle", "turtle")
    ds = URIRef(f"{BASE}/explore/datasets/air_quality_daily")
    assert (ds, RDF.type, DCAT.Dataset) in g
    assert str(g.value(ds, DCTERMS.accessRights)).endswith("/PUBLIC")
    assert str(g.value(ds, DCTERMS.accrualPeriodicity)).endswith("/DAILY")
    assert (ds, DCAT.landingPage, URIRef(f"{BASE}/explore/datasets/air_quality_daily")) in g
    tax = _graph(app, "/explore/datasets/tax_credit_rating.jsonld", "application/ld+json", "json-ld")
    tds = URIRef(f"{BASE}/explore/datasets/tax_credit_rating")
    assert str(tax.value(tds, DCTERMS.accessRights)).endswith("/RESTRICTED")
    twin = app.get("/explore/datasets/air_quality_daily.json").json()
    assert twin["code"] == "air_quality_daily" and twin["downloads"]["csv"].endswith(".csv")
    for missing in ("/explore/datasets/population.ttl", "/explore/datasets/nope.jsonld", "/catalog.xml"):
        r = app.get(missing)
        assert r.status_code == 404 and r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_licence_contact_and_tags_from_the_catalogue(app: TestClient) -> None:
    import dataclasses as dc

    from gateway.portal.ckan import package
    from gateway.portal.dcat import dataset_graph
    from gateway.portal.listing import open_listing

    state = app.app.state.gateway  # type: ignore[attr-defined]
    listing = app.portal.call(open_listing, state)  # type: ignore[attr-defined]
    ds = next(d for d in listing if d.code == "air_quality_daily")
    spec = dc.replace(ds.spec, licence="CC-BY-4.0", contact="029-12345678", tags=("环境", "空气"))
    richer = dc.replace(ds, spec=spec)
    pkg = package(richer, BASE)
    assert pkg["license_id"] == "CC-BY-4.0" and pkg["maintainer"] == "029-12345678"
    assert {"环境", "空气"} <= {t["name"] for t in pkg["tags"]}
    g = dataset_graph(richer, BASE)
    node = URIRef(f"{BASE}/explore/datasets/air_quality_daily")
    assert (node, DCTERMS.license, URIRef("http://spdx.org/licenses/CC-BY-4.0")) in g
    assert (node, DCAT.keyword, Literal("环境", lang="zh")) in g
