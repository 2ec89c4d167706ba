"""The read part of the CKAN Action API (CKAN 2.10's protocol, docs/portal.md §CKAN), under
`/api/3/action/{action}` and `/api/action/{action}` (CKAN serves both; `ckanapi` uses the latter),
GET with query parameters or POST with a JSON or form body:

  package_list, package_show (id = dataset code), package_search (q, fq with organization: /
  groups: / res_format: / tags: / name:, rows, start, sort, facet.field), organization_list
  (all_fields), group_list (all_fields; groups are the catalogue's categories 基础库/主题库/专题库),
  status_show.

Answers are CKAN's envelope, as its clients require (the one exception to our problem shape, like
RFC 6749's on /oauth): `{"help": …, "success": true, "result": …}`, and on error
`{"help": …, "success": false, "error": {"__type": "Not Found Error" | "Validation Error" |
"Search Query Error" | "Bad request" | "Rate Limit", "message": …}}` with CKAN's statuses (404, 409,
400, 429). A package is a dataset of the open listing (gateway.portal.listing): only what the open
tier shows; a 有条件开放 dataset is listed with its metadata, and its resources say a granted API key
is needed. Calls count against the anonymous API allowance and are access events (tier "open",
operation `ckan.<action>`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access_log import anonymous_read_event, answer_once_recorded
from gateway.identity.limits_hook import check_rate
from gateway.portal.listing import (
    CONDITIONAL_NOTE,
    FORMAT_LABELS,
    MEDIA_TYPES,
    OpenDataset,
    open_listing,
    public_base,
)
from gateway.portal.search import matches
from gateway.state import GatewayState
from policies.model import CATEGORY_LABELS, Category
from resolvers.context import ANONYMOUS

CKAN_VERSION = "2.10.4"  # the API version whose read protocol this follows
MAX_ROWS = 1000
FQ_TOKEN = re.compile(
    r'\(|\)|\bOR\b|\bAND\b|\*:\*|(?P<sign>[+-]?)(?P<key>[A-Za-z_]+):(?P<value>\[[^\]]*\]|"[^"]*"|[^\s()]+)'
)
SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "id": lambda p: p["id"],  # what ckanext-harvest pages by
    "name": lambda p: p["name"],
    "title_string": lambda p: p["title"],
    "metadata_modified": lambda p: p["metadata_modified"] or "",
    "metadata_created": lambda p: p["metadata_created"] or "",
}


class CkanError(Exception):
    def __init__(self, status: int, kind: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.detail = status, kind, message, detail


def _iso(value: Any) -> str | None:
    # CKAN's own form: naive UTC with microseconds
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") if value is not None else None


def _organization(ds: OpenDataset, count: int | None = None) -> dict[str, Any]:
    d = ds.department
    out: dict[str, Any] = {
        "id": d.code,
        "name": d.code,
        "title": d.name,
        "display_name": d.name,
        "description": d.name_en,
        "type": "organization",
        "is_organization": True,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
    }
    if count is not None:
        out["package_count"] = count
    return out


def _group(category: Category, count: int | None = None) -> dict[str, Any]:
    label = CATEGORY_LABELS[category]
    out: dict[str, Any] = {
        "id": category.value,
        "name": category.value,
        "title": label,
        "display_name": label,
        "description": "",
        "type": "group",
        "is_organization": False,
        "state": "active",
        "approval_status": "approved",
        "image_display_url": "",
    }
    if count is not None:
        out["package_count"] = count
    return out


def package(ds: OpenDataset, base: str) -> dict[str, Any]:
    spec, entry = ds.spec, ds.entry
    access = CONDITIONAL_NOTE if ds.conditional else "无条件开放：任何人可直接下载和调用。"
    resources = [
        {
            "id": f"{spec.code}-{fmt}",
            "package_id": spec.code,
            "name": f"{spec.name}（{FORMAT_LABELS[fmt]}）",
            "description": access,
            "format": FORMAT_LABELS[fmt],
            "mimetype": MEDIA_TYPES[fmt],
            "url": url,
            "url_type": None,
            "state": "active",
            "position": i,
            "last_modified": _iso(ds.modified),
            "created": _iso(ds.created),
            "access_restricted": ds.conditional,
        }
        for i, (fmt, url) in enumerate(ds.downloads(base).items())
    ]
    resources.append(
        {
            "id": f"{spec.code}-graphql",
            "package_id": spec.code,
            "name": f"{spec.name}（GraphQL 接口，根字段 {entry['rootField']}）",
            "description": access,
            "format": "GraphQL",
            "mimetype": "application/graphql-response+json",
            "url": ds.graphql(base),
            "url_type": None,
            "state": "active",
            "position": len(resources),
            "last_modified": _iso(ds.modified),
            "created": _iso(ds.created),
            "access_restricted": ds.conditional,
        }
    )
    tags = [{"name": w, "display_name": w, "state": "active"} for w in ds.keywords()]
    extras = {
        "resource_code": spec.resource_code,
        "update_cycle": entry["updateCycle"],
        "open_attribute": entry["openAttribute"],
        "share_attribute": ds.share_label,
        "category": entry["category"],
        "provider_department": ds.department.name,
        "graphql_root_field": entry["rootField"],
        "fields": "、".join(f["title"] for f in entry["fields"]),
    }
    # Not spec.open_conditions: that prose may name the fields kept closed, and the listing says
    # nothing the anonymous schema's introspection does not (gateway.explorer).
    return {
        "id": spec.code,
        "name": spec.code,
        "title": spec.name,
        "notes": spec.description,
        "url": ds.page(base),
        "type": "dataset",
        "state": "active",
        "private": False,
        "isopen": not ds.conditional,
        "license_id": spec.licence or None,
        "license_title": spec.licence or None,
        "author": ds.department.name,
        "maintainer": spec.contact or ds.department.name,
        "version": str(spec.version),
        "metadata_created": _iso(ds.created),
        "metadata_modified": _iso(ds.modified),
        "owner_org": ds.department.code,
        "organization": _organization(ds),
        "groups": [_group(spec.category)],
        "tags": tags,
        "num_tags": len(tags),
        "resources": resources,
        "num_resources": len(resources),
        "extras": [{"key": k, "value": v} for k, v in extras.items()],
    }


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes", "on")


def _int(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise CkanError(
            409, "Validation Error", f"{name}: Invalid integer", **{name: ["Invalid integer"]}
        ) from None
    if not low <= value <= high:
        raise CkanError(
            409, "Validation Error", f"{name}: must be {low}..{high}", **{name: [f"{low}..{high}"]}
        )
    return value


Term = tuple[bool, str, str]  # (negated, field, value or "[from TO to]")
FILTER_FIELDS = frozenset(
    {"organization", "owner_org", "groups", "res_format", "tags", "name", "id", "capacity"}
    | {"dataset_type", "type", "state", "metadata_modified", "metadata_created"}
)


def _filters(fq: str) -> list[list[Term]]:
    """`fq` in CKAN's Solr form, the subset harvesters send (ckanext-harvest's CKAN harvester:
    `(organization:a OR organization:b)`, `-groups:x`, `metadata_modified:[2024-05-01T00:00:00Z TO *]`):
    `field:value` terms (quoted values and `[from TO to]` ranges allowed, `+`/`-` prefixes), joined
    by AND; a parenthesised group may join its terms by OR. Returns the AND of OR-groups."""
    groups: list[list[Term]] = []
    inner: list[Term] | None = None
    any_or = False
    pos = 0
    for m in FQ_TOKEN.finditer(fq):
        if fq[pos : m.start()].strip():
            raise CkanError(409, "Search Query Error", f"Cannot parse fq: {fq}")
        pos = m.end()
        part = m.group(0)
        if part == "(":
            if inner is not None:
                raise CkanError(409, "Search Query Error", "Nested parentheses in fq are not supported")
            inner, any_or = [], False
        elif part == ")":
            if inner is None:
                raise CkanError(409, "Search Query Error", f"Cannot parse fq: {fq}")
            groups.extend([inner] if any_or else [[t] for t in inner])
            inner = None
        elif part == "OR":
            if inner is None:
                raise CkanError(409, "Search Query Error", "OR is supported inside parentheses only")
            any_or = True
        elif part in ("AND", "*:*"):
            continue
        else:
            sign, key, value = m.group("sign"), m.group("key"), m.group("value").strip('"')
            if key not in FILTER_FIELDS:
                raise CkanError(409, "Search Query Error", f"Unsupported filter field: {key}")
            term = (sign == "-", key, value)
            if inner is not None:
                inner.append(term)
            else:
                groups.append([term])
    if fq[pos:].strip() or inner is not None:
        raise CkanError(409, "Search Query Error", f"Cannot parse fq: {fq}")
    return groups


def _holds(p: dict[str, Any], term: Term) -> bool:
    negated, key, value = term
    if value.startswith("[") and value.endswith("]"):
        low_text, _, high_text = value[1:-1].partition(" TO ")
        have = p.get(key) or ""
        low, high = _instant(low_text), _instant(high_text)
        inside = bool(have) and (low is None or have >= low) and (high is None or have <= high)
        return inside != negated
    return (value in _values(p, key)) != negated


def _instant(bound: str) -> str | None:
    """A range bound as our timestamps are written (naive UTC ISO 8601); `*` is open. Solr's
    `NOW` arithmetic is not supported."""
    bound = bound.strip()
    if bound == "*":
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T[\d:.]+)?Z?", bound):
        raise CkanError(409, "Search Query Error", f"Unsupported range bound: {bound}")
    return bound.rstrip("Z")


def _values(p: dict[str, Any], key: str) -> set[str]:
    if key in ("organization", "owner_org"):
        return {p["organization"]["name"]}
    if key == "groups":
        return {g["name"] for g in p["groups"]}
    if key == "res_format":
        return {r["format"] for r in p["resources"]} | {r["format"].lower() for r in p["resources"]}
    if key == "tags":
        return {t["name"] for t in p["tags"]}
    if key == "capacity":
        return {"public"}
    if key in ("dataset_type", "type"):
        return {p["type"]}
    if key == "state":
        return {p["state"]}
    return {p["name"], p["id"]}


class CkanAPI:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.actions: dict[str, Callable[[dict[str, Any], list[OpenDataset]], Any]] = {
            "package_list": self.package_list,
            "package_show": self.package_show,
            "package_search": self.package_search,
            "organization_list": self.organization_list,
            "organization_show": self.organization_show,
            "group_show": self.group_show,
            "group_list": self.group_list,
            "status_show": self.status_show,
        }

    def routes(self) -> list[Route]:
        return [
            Route("/api/3/action/{action}", self.handle, methods=["GET", "POST"]),
            Route("/api/action/{action}", self.handle, methods=["GET", "POST"]),
        ]

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        action = request.path_params["action"]
        base = public_base(self.state)
        help_url = f"{base}/api/3/action/help_show?name={action}"
        decision = await check_rate(self.state.identity.limiter, request, ANONYMOUS)
        codes: list[str] = []
        if not decision.allowed:
            err = CkanError(
                429,
                "Rate Limit",
                f"Rate limit exceeded ({decision.policy}); retry after {decision.retry_after} s.",
            )
            response = self._error(help_url, err, decision.headers)
            if not decision.record:
                return response
            codes = ["RATE_LIMITED"]
        else:
            try:
                handler = self.actions.get(action)
                if handler is None:
                    raise CkanError(400, "Bad request", f"Bad request - Action name not known: {action}")
                params = await self._params(request)
                result = handler(params, await open_listing(self.state))
                response = Response(
                    orjson.dumps({"help": help_url, "success": True, "result": result}),
                    media_type="application/json;charset=utf-8",
                    headers=decision.headers,
                )
            except CkanError as err:
                codes = [err.kind.upper().replace(" ", "_")]
                response = self._error(help_url, err, decision.headers)
        event = anonymous_read_event(request, f"ckan.{action}"[:80], response.status_code, codes, started)
        return await answer_once_recorded(self.state.access_log, event, response)

    def _error(self, help_url: str, err: CkanError, headers: dict[str, str]) -> Response:
        body = {
            "help": help_url,
            "success": False,
            "error": {"__type": err.kind, "message": err.message, **err.detail},
        }
        return Response(
            orjson.dumps(body),
            status_code=err.status,
            media_type="application/json;charset=utf-8",
            headers=headers,
        )

    async def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            body = await request.body()
            if body:
                media = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if media == "application/x-www-form-urlencoded":
                    params.update(parse_qsl(body.decode(errors="replace")))
                else:
                    try:
                        doc = orjson.loads(body)
                    except orjson.JSONDecodeError:
                        raise CkanError(
                            400, "Bad request", "Bad request - JSON Error: could not parse"
                        ) from None
                    if not isinstance(doc, dict):
                        raise CkanError(400, "Bad request", "Bad request - JSON Error: not an object")
                    params.update(doc)
        return params

    # ------------------------------------------------------------------ actions

    def package_list(self, params: dict[str, Any], listing: list[OpenDataset]) -> list[str]:
        names = sorted(ds.code for ds in listing)
        limit = _int(params, "limit", len(names), 0, 10**6)
        offset = _int(params, "offset", 0, 0, 10**6)
        return names[offset : offset + limit]

    def package_show(self, params: dict[str, Any], listing: list[OpenDataset]) -> dict[str, Any]:
        ident = params.get("id") or params.get("name_or_id")
        if not ident:
            raise CkanError(409, "Validation Error", "id: Missing value", id=["Missing value"])
        for ds in listing:
            if ds.code == ident or ds.spec.resource_code == ident:
                return package(ds, public_base(self.state))
        raise CkanError(404, "Not Found Error", "Not found")

    def package_search(self, params: dict[str, Any], listing: list[OpenDataset]) -> dict[str, Any]:
        rows = _int(params, "rows", 10, 0, MAX_ROWS)
        start = _int(params, "start", 0, 0, 10**6)
        q = str(params.get("q") or "").strip()
        filters = _filters(str(params.get("fq") or ""))
        found = []
        base = public_base(self.state)
        for ds in listing:
            p = package(ds, base)
            if q and q != "*:*" and not matches(ds, q):
                continue
            if all(any(_holds(p, term) for term in group) for group in filters):
                found.append(p)
        sort = str(params.get("sort") or "score desc, metadata_modified desc")
        for clause in reversed([c.strip() for c in sort.split(",") if c.strip()]):
            name, _, direction = clause.partition(" ")
            direction = direction.strip().lower() or "asc"
            if name == "score":
                continue  # relevance: matching order is the listing's
            if name not in SORT_KEYS or direction not in ("asc", "desc"):
                raise CkanError(409, "Search Query Error", f"Invalid sort: {clause}")
            found.sort(key=SORT_KEYS[name], reverse=direction == "desc")
        facet_fields = params.get("facet.field") or []
        if isinstance(facet_fields, str):
            try:
                facet_fields = orjson.loads(facet_fields)
            except orjson.JSONDecodeError:
                facet_fields = [facet_fields]
        facets: dict[str, dict[str, int]] = {}
        search_facets: dict[str, Any] = {}
        for key in facet_fields if isinstance(facet_fields, list) else []:
            if key not in ("organization", "groups", "res_format", "tags"):
                continue
            counts: dict[str, int] = {}
            for p in found:
                for v in _values(p, key):
                    if key != "res_format" or v != v.lower() or v.upper() == v:
                        counts[v] = counts.get(v, 0) + 1
            facets[key] = counts
            search_facets[key] = {
                "title": key,
                "items": [{"name": k, "display_name": k, "count": c} for k, c in sorted(counts.items())],
            }
        return {
            "count": len(found),
            "sort": sort,
            "results": found[start : start + rows],
            "facets": facets,
            "search_facets": search_facets,
        }

    def organization_list(self, params: dict[str, Any], listing: list[OpenDataset]) -> list[Any]:
        counts: dict[str, int] = {}
        first: dict[str, OpenDataset] = {}
        for ds in listing:
            counts[ds.department.code] = counts.get(ds.department.code, 0) + 1
            first.setdefault(ds.department.code, ds)
        if _truthy(params.get("all_fields")):
            return [_organization(first[c], counts[c]) for c in sorted(first)]
        return sorted(first)

    def organization_show(self, params: dict[str, Any], listing: list[OpenDataset]) -> dict[str, Any]:
        ident = params.get("id")
        if not ident:
            raise CkanError(409, "Validation Error", "id: Missing value", id=["Missing value"])
        mine = [ds for ds in listing if ds.department.code == ident]
        if not mine:
            raise CkanError(404, "Not Found Error", "Not found")
        return _organization(mine[0], len(mine))

    def group_show(self, params: dict[str, Any], listing: list[OpenDataset]) -> dict[str, Any]:
        ident = params.get("id")
        if not ident:
            raise CkanError(409, "Validation Error", "id: Missing value", id=["Missing value"])
        mine = [ds for ds in listing if ds.spec.category.value == ident]
        if not mine:
            raise CkanError(404, "Not Found Error", "Not found")
        return _group(mine[0].spec.category, len(mine))

    def group_list(self, params: dict[str, Any], listing: list[OpenDataset]) -> list[Any]:
        counts: dict[Category, int] = {}
        for ds in listing:
            counts[ds.spec.category] = counts.get(ds.spec.category, 0) + 1
        ordered = sorted(counts, key=lambda c: c.value)
        if _truthy(params.get("all_fields")):
            return [_group(c, counts[c]) for c in ordered]
        return [c.value for c in ordered]

    def status_show(self, params: dict[str, Any], listing: list[OpenDataset]) -> dict[str, Any]:
        return {
            "ckan_version": CKAN_VERSION,
            "site_title": "数桥 公共数据开放",
            "site_description": "Shuqiao open data: unconditionally and conditionally open datasets",
            "site_url": public_base(self.state),
            "locale_default": "zh_Hans_CN",
            "error_emails_to": None,
            "extensions": ["dcat"],
        }
