"""The open catalogue as DCAT (W3C DCAT 2, DCAT-AP-compatible), built with rdflib (docs/portal.md §DCAT):

  GET /catalog.ttl, /catalog.jsonld                     the whole catalogue (the paths ckanext-dcat uses)
  GET /explore/datasets/{code}.ttl, .jsonld             one dataset
  (the dataset page's JSON twin, /explore/datasets/{code}.json, is gateway.portal.pages')

dcat:Catalog → dcat:Dataset (dct:identifier = 资源代码, dct:title/dct:description @zh (and @en where
the catalogue has it), dcat:keyword @zh, dct:publisher a foaf:Organization, dct:issued/dct:modified,
dct:accrualPeriodicity from the EU frequency vocabulary, dct:accessRights PUBLIC / RESTRICTED,
dcat:landingPage) → dcat:Distribution per download format (dcat:downloadURL, dcat:accessURL,
dcat:mediaType, dct:format) plus the GraphQL endpoint (dcat:accessURL). Only the open listing
(gateway.portal.listing) appears: what the anonymous open schema shows. Calls count against the
anonymous API allowance and are access events (operation `dcat.catalogue` / `dcat.dataset`).
"""

from __future__ import annotations

import re
import time
from typing import Any

from rdflib import RDF, XSD, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access_log import anonymous_read_event, answer_once_recorded
from gateway.identity.limits_hook import check_rate
from gateway.portal.listing import FORMAT_LABELS, MEDIA_TYPES, OpenDataset, open_listing, public_base
from gateway.problems import Problem, problem_response
from gateway.state import GatewayState
from resolvers.context import ANONYMOUS

VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
FREQ = Namespace("http://publications.europa.eu/resource/authority/frequency/")
ACCESS = Namespace("http://publications.europa.eu/resource/authority/access-right/")
IANA = "https://www.iana.org/assignments/media-types/"
SPDX = "http://spdx.org/licenses/"
SPDX_ID = re.compile(r"[A-Za-z0-9.+-]+")
FREQUENCIES = {
    "realtime": "UPDATE_CONT",
    "hourly": "HOURLY",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "yearly": "ANNUAL",
    "annually": "ANNUAL",
    "irregular": "IRREG",
}
SERIALISATIONS = {
    "ttl": ("turtle", "text/turtle; charset=utf-8"),
    "jsonld": ("json-ld", "application/ld+json"),
}
CONTEXT = {"dcat": str(DCAT), "dct": str(DCTERMS), "foaf": str(FOAF), "vcard": str(VCARD), "xsd": str(XSD)}


def _dataset(g: Graph, ds: OpenDataset, base: str) -> URIRef:
    spec, entry = ds.spec, ds.entry
    node = URIRef(f"{base}/explore/datasets/{spec.code}")
    g.add((node, RDF.type, DCAT.Dataset))
    g.add((node, DCTERMS.identifier, Literal(spec.resource_code)))
    g.add((node, DCTERMS.title, Literal(spec.name, lang="zh")))
    if spec.name_en:
        g.add((node, DCTERMS.title, Literal(spec.name_en, lang="en")))
    if spec.description:
        g.add((node, DCTERMS.description, Literal(spec.description, lang="zh")))
    for word in ds.keywords():
        g.add((node, DCAT.keyword, Literal(word, lang="zh")))
    publisher = URIRef(f"{base}/explore?dept={ds.department.code}")
    g.add((publisher, RDF.type, FOAF.Organization))
    g.add((publisher, FOAF.name, Literal(ds.department.name, lang="zh")))
    if ds.department.name_en:
        g.add((publisher, FOAF.name, Literal(ds.department.name_en, lang="en")))
    g.add((node, DCTERMS.publisher, publisher))
    contact = BNode(f"contact-{spec.code}")
    g.add((contact, RDF.type, VCARD.Organization))
    g.add((contact, VCARD.fn, Literal(ds.department.name, lang="zh")))
    if spec.contact:
        g.add((contact, VCARD.note, Literal(spec.contact, lang="zh")))
    g.add((node, DCAT.contactPoint, contact))
    if spec.licence:  # an SPDX identifier (CC-BY-4.0) as its URI, anything else as text
        licence = URIRef(SPDX + spec.licence) if SPDX_ID.fullmatch(spec.licence) else Literal(spec.licence)
        g.add((node, DCTERMS.license, licence))
    if ds.created is not None:
        g.add((node, DCTERMS.issued, Literal(ds.created.replace(tzinfo=None), datatype=XSD.dateTime)))
    if ds.modified is not None:
        g.add((node, DCTERMS.modified, Literal(ds.modified.replace(tzinfo=None), datatype=XSD.dateTime)))
    if spec.update_cycle in FREQUENCIES:
        g.add((node, DCTERMS.accrualPeriodicity, FREQ[FREQUENCIES[spec.update_cycle]]))
    g.add((node, DCTERMS.accessRights, ACCESS["RESTRICTED" if ds.conditional else "PUBLIC"]))
    g.add((node, DCAT.landingPage, URIRef(ds.page(base))))
    g.add((node, DCAT.theme, Literal(entry["category"], lang="zh")))
    access = "有条件开放：需持有已批准申请的企业 API Key（X-API-Key）" if ds.conditional else "无条件开放"
    for fmt, url in ds.downloads(base).items():
        dist = URIRef(f"{node}#{fmt}")
        g.add((node, DCAT.distribution, dist))
        g.add((dist, RDF.type, DCAT.Distribution))
        g.add((dist, DCTERMS.title, Literal(f"{spec.name}（{FORMAT_LABELS[fmt]}）", lang="zh")))
        g.add((dist, DCTERMS.description, Literal(access, lang="zh")))
        g.add((dist, DCAT.downloadURL, URIRef(url)))
        g.add((dist, DCAT.accessURL, URIRef(url)))
        g.add((dist, DCAT.mediaType, URIRef(IANA + MEDIA_TYPES[fmt])))
        g.add((dist, DCTERMS.format, Literal(FORMAT_LABELS[fmt])))
    api = URIRef(f"{node}#graphql")
    g.add((node, DCAT.distribution, api))
    g.add((api, RDF.type, DCAT.Distribution))
    g.add((api, DCTERMS.title, Literal(f"{spec.name}（GraphQL，根字段 {entry['rootField']}）", lang="zh")))
    g.add((api, DCTERMS.description, Literal(access, lang="zh")))
    g.add((api, DCAT.accessURL, URIRef(ds.graphql(base))))
    g.add((api, DCTERMS.format, Literal("GraphQL")))
    return node


def _graph() -> Graph:
    g = Graph()
    for prefix, ns in CONTEXT.items():
        g.bind(prefix, ns)
    return g


def catalogue_graph(listing: list[OpenDataset], base: str) -> Graph:
    g = _graph()
    catalog = URIRef(f"{base}/catalog")
    g.add((catalog, RDF.type, DCAT.Catalog))
    g.add((catalog, DCTERMS.title, Literal("数桥 公共数据开放目录", lang="zh")))
    g.add((catalog, DCTERMS.title, Literal("Shuqiao open-data catalogue", lang="en")))
    g.add((catalog, DCTERMS.description, Literal("无条件开放和有条件开放的公共数据资源目录", lang="zh")))
    g.add((catalog, FOAF.homepage, URIRef(f"{base}/explore")))
    publisher = URIRef(f"{base}/")
    g.add((publisher, RDF.type, FOAF.Organization))
    g.add((publisher, FOAF.name, Literal("数桥 公共数据开放平台", lang="zh")))
    g.add((catalog, DCTERMS.publisher, publisher))
    modified = [ds.modified for ds in listing if ds.modified is not None]
    if modified:
        g.add((catalog, DCTERMS.modified, Literal(max(modified).replace(tzinfo=None), datatype=XSD.dateTime)))
    for ds in listing:
        g.add((catalog, DCAT.dataset, _dataset(g, ds, base)))
    return g


def dataset_graph(ds: OpenDataset, base: str) -> Graph:
    g = _graph()
    _dataset(g, ds, base)
    return g


def serialise(g: Graph, ext: str) -> bytes:
    fmt, _ = SERIALISATIONS[ext]
    if fmt == "json-ld":
        return g.serialize(format="json-ld", context=CONTEXT, auto_compact=True).encode()
    return g.serialize(format=fmt).encode()


class DcatEndpoints:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._cache: dict[str, tuple[list[OpenDataset], bytes]] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/catalog.{ext}", self.catalogue, methods=["GET"]),
            Route("/explore/datasets/{code}.{ext}", self.dataset, methods=["GET"]),
        ]

    async def catalogue(self, request: Request) -> Response:
        async def answer() -> Response:
            ext = request.path_params["ext"]
            if ext not in SERIALISATIONS:
                raise Problem(404, "The catalogue is at /catalog.ttl and /catalog.jsonld.", "NOT_FOUND")
            listing = await open_listing(self.state)
            hit = self._cache.get(ext)
            if hit is None or hit[0] is not listing:  # a catalogue change builds a new listing
                body = serialise(catalogue_graph(listing, public_base(self.state)), ext)
                self._cache[ext] = hit = (listing, body)
            return Response(hit[1], media_type=SERIALISATIONS[ext][1], headers={"Cache-Control": "no-cache"})

        return await self._metered(request, "dcat.catalogue", answer)

    async def dataset(self, request: Request) -> Response:
        async def answer() -> Response:
            code, ext = request.path_params["code"], request.path_params["ext"]
            if ext not in SERIALISATIONS:
                raise Problem(404, "Formats: .ttl, .jsonld (and the page's twin .json).", "NOT_FOUND")
            for ds in await open_listing(self.state):
                if ds.code == code:
                    g = dataset_graph(ds, public_base(self.state))
                    return Response(serialise(g, ext), media_type=SERIALISATIONS[ext][1])
            raise Problem(404, f"No open dataset {code!r}.", "NOT_FOUND")

        return await self._metered(request, "dcat.dataset", answer)

    async def _metered(self, request: Request, operation: str, answer: Any) -> Response:
        """The anonymous API allowance and one access event, as every open-tier answer."""
        started = time.perf_counter()
        decision = await check_rate(self.state.identity.limiter, request, ANONYMOUS)
        codes: list[str] = []
        if not decision.allowed:
            message = f"Rate limit exceeded ({decision.policy}); retry after {decision.retry_after} s."
            response = problem_response(Problem(429, message, "RATE_LIMITED", decision.headers))
            if not decision.record:
                return response
            codes = ["RATE_LIMITED"]
        else:
            try:
                response = await answer()
            except Problem as problem:
                response, codes = problem_response(problem), [problem.code]
            response.headers.update(decision.headers)
        event = anonymous_read_event(request, operation, response.status_code, codes, started)
        return await answer_once_recorded(self.state.access_log, event, response)
