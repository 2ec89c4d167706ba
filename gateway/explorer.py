"""The public open-data explorer (公共数据开放): its catalogue, read off the anonymous open schema.

Routes:
  GET /                          redirects to the explorer
  GET /explore                   the catalogue page (gateway.portal.pages: server-rendered, no JS needed)
  GET /explore/static/{name}     the pages' script and style
  GET /explore/api/catalogue     the open catalogue as JSON
  POST /explore/api/graphql      the open tier on the page's own budget (gateway.portal.budget); the
                                 dataset page runs its preview through the same endpoint's executor

The catalogue is derived from the *built anonymous open schema itself* — the object
`/open/graphql` executes against — walking its GraphQL types; the catalogue's policy objects only
supply the Chinese labels of what the schema already contains. A dataset or field absent from that
schema (不予开放, L3+, sensitive or unopened personal information) cannot appear here, and nothing is
said that the schema's introspection does not already say (its descriptions carry the same name,
provider, resource code, category, update cycle and open attribute) — apart from each listed
dataset's freshness and size (`rowCount`, `lastLoadAt`, `lastChangeAt`, `lastSyncAt`, from
catalogue.freshness: null until rows are loaded with `shuqiao data load`), read on every call since
a load changes them without changing the schema. An `X-API-Key` on this route is ignored: the
catalogue is always the anonymous view. Each call counts against the page's own budget
(SHUQIAO_EXPLORER_RATE per address, not the API's allowance) and is an access event (tier "open"),
written before the answer leaves.
"""

from __future__ import annotations

import logging
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType, get_named_type
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from catalogue.freshness import DatasetStatus, describe, load_statuses
from catalogue.spec import FieldSpec
from gateway.access_log import anonymous_read_event, answer_once_recorded
from gateway.portal.budget import PREVIEW_PATH, ExplorerPreview, explorer_decision, rate_problem
from gateway.problems import Problem, problem_response
from gateway.registry import BuiltSchema
from gateway.state import GatewayState
from policies import decisions
from policies.model import CATEGORY_LABELS, OPEN_LABELS, Action, Open, Tier
from schema.naming import enum_value

STATIC = Path(__file__).resolve().parent / "static" / "explorer"
ASSETS = {"explorer.js": "text/javascript; charset=utf-8", "explorer.css": "text/css; charset=utf-8"}
# The header /open/graphql reads an enterprise's key from (gateway.graphql_http); the explorer's
# tests send a real demo key under this name, so the page cannot advertise a header that does not work.
API_KEY_HEADER = "X-API-Key"
ENDPOINT = "/open/graphql"
UPDATE_CYCLES = {
    "realtime": "实时",
    "hourly": "每小时",
    "daily": "每日",
    "weekly": "每周",
    "monthly": "每月",
    "quarterly": "每季度",
    "yearly": "每年",
    "annually": "每年",
    "irregular": "不定期",
}
# Filter operators the page offers (a subset of what each filter input type declares).
DOWNLOAD_FORMATS = ("csv", "xlsx", "json", "jsonl")
OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "prefix")
# Everything the pages need comes from this origin; nothing may be framed or posted elsewhere
# (their forms are GETs to the explorer itself). No inline script or style.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
log = logging.getLogger("shuqiao")


def _gql_type_name(t: Any) -> str:
    return get_named_type(t).name


def open_catalogue(built: BuiltSchema, departments: dict[str, str], max_page_size: int) -> dict[str, Any]:
    """The anonymous open catalogue, read off the built open schema (see the module docstring);
    `departments` maps a provider's code to its name (the name the schema's descriptions carry)."""
    schema = built.tier.graphql
    bindings = built.tier.bindings
    if bindings.tier is not Tier.OPEN or bindings.department is not None:
        raise ValueError("the explorer lists the anonymous open schema only")
    query = schema.query_type
    assert query is not None
    datasets = []
    for root, gfield in query.fields.items():
        ds = bindings.root_datasets.get(root)
        if ds is None:  # entity lookups (legalEntity, person) are not datasets
            continue
        # Belt and braces: the schema builder already applied these; if they ever disagree, say nothing.
        if not decisions.open_dataset_listed(ds.policy()) or ds.open is Open.NONE:
            continue
        connection = get_named_type(gfield.type)
        assert isinstance(connection, GraphQLObjectType)
        node = get_named_type(get_named_type(connection.fields["edges"].type).fields["node"].type)
        assert isinstance(node, GraphQLObjectType)
        binding = bindings.nodes[node.name]
        where_arg = gfield.args.get("where")
        where = get_named_type(where_arg.type) if where_arg is not None else None
        order_arg = gfield.args.get("orderBy")
        order_fields: dict[str, Any] = {}
        if order_arg is not None:
            order_input = get_named_type(order_arg.type)
            assert isinstance(order_input, GraphQLInputObjectType)
            order_enum = get_named_type(order_input.fields["field"].type)
            assert isinstance(order_enum, GraphQLEnumType)
            order_fields = order_enum.values
        fields = []
        for gname, nfield in node.fields.items():
            spec: FieldSpec | None = binding.fields.get(gname)
            if spec is None:  # entity links (objects, not columns) are not shown as columns
                continue
            if not decisions.open_field_exists(ds.policy(), spec.policy()):
                continue
            decision = decisions.decide_open_field(ds.policy(), spec.policy())
            # Filtering and ordering reveal clear values, so the page offers them only where the
            # executor allows them (resolvers.plan refuses the rest with FORBIDDEN_FILTER).
            clear = decisions.may_filter(decision)
            operators: list[str] = []
            filter_scalar = None
            if clear and isinstance(where, GraphQLInputObjectType) and gname in where.fields:
                filter_type = get_named_type(where.fields[gname].type)
                assert isinstance(filter_type, GraphQLInputObjectType)
                operators = [op for op in OPERATORS if op in filter_type.fields]
                filter_scalar = _gql_type_name(filter_type.fields["eq"].type)
            order_by = enum_value(spec.name) if clear and enum_value(spec.name) in order_fields else None
            fields.append(
                {
                    "name": gname,
                    "title": spec.title,
                    "description": spec.description,
                    "type": _gql_type_name(nfield.type),
                    "filterType": filter_scalar,
                    "masked": decision.action is Action.MASK,
                    "operators": operators,
                    "orderBy": order_by,
                }
            )
        datasets.append(
            {
                "code": ds.code,
                "rootField": root,
                "name": ds.name,
                "nameEn": ds.name_en,
                "resourceCode": ds.resource_code,
                "department": departments.get(ds.department, ds.department),
                "category": CATEGORY_LABELS[ds.category],
                "updateCycle": UPDATE_CYCLES.get(ds.update_cycle, ds.update_cycle),
                "openAttribute": OPEN_LABELS[ds.open],
                "conditional": ds.open is Open.CONDITIONAL,
                "description": ds.description,
                # argument types exactly as the schema declares them, for the page's variable definitions
                "whereType": str(where_arg.type) if where_arg is not None else None,
                "orderByType": str(order_arg.type) if order_arg is not None else None,
                "fields": fields,
                "downloads": {fmt: f"/open/download/{ds.code}.{fmt}" for fmt in DOWNLOAD_FORMATS},
            }
        )
    datasets.sort(key=lambda d: (d["conditional"], d["resourceCode"]))
    return {
        "endpoint": ENDPOINT,
        "previewEndpoint": PREVIEW_PATH,
        "apiKeyHeader": API_KEY_HEADER,
        "maxPageSize": max_page_size,
        "datasets": datasets,
    }


def _with_freshness(dataset: dict[str, Any], status: DatasetStatus | None) -> dict[str, Any]:
    """Size and freshness, public: no load digest, no sync outcome (a source's error text)."""
    fresh = describe(status)
    return {
        **dataset,
        "rowCount": fresh["row_count"],
        "lastLoadAt": fresh["last_load_at"],
        "lastChangeAt": fresh["last_change_at"],
        "lastSyncAt": fresh["last_sync_at"],
    }


class Explorer:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        # One rendering per built schema: a catalogue change builds a new schema, so a new entry.
        self._cache: weakref.WeakKeyDictionary[BuiltSchema, dict[str, Any]] = weakref.WeakKeyDictionary()
        self.preview = ExplorerPreview(state)

    def routes(self) -> list[Route]:
        """Under `Mount("/explore")`; the page itself is `GET /explore` (`self.page`)."""
        return [
            Route("/static/{name}", self.asset),
            Route("/api/catalogue", self.catalogue),
            Route("/api/graphql", self.preview.handle, methods=["GET", "POST"]),
        ]

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/explore", status_code=302)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return problem_response(Problem(404, "No such asset.", "NOT_FOUND"))
        return FileResponse(
            STATIC / name, media_type=ASSETS[name], headers={"X-Content-Type-Options": "nosniff"}
        )

    async def _body(self) -> bytes:
        registry = self.state.registry
        built = await registry.schema(Tier.OPEN)  # the anonymous open schema /open/graphql runs on
        doc = self._cache.get(built)
        if doc is None:
            departments = {code: d.name for code, d in (await registry.refresh()).departments.items()}
            doc = open_catalogue(built, departments, self.state.settings.limits.max_page_size)
            self._cache[built] = doc
        statuses = await load_statuses(self.state.engine)
        return orjson.dumps(
            {**doc, "datasets": [_with_freshness(d, statuses.get(d["code"])) for d in doc["datasets"]]}
        )

    async def catalogue(self, request: Request) -> Response:
        started = time.perf_counter()
        decision = await explorer_decision(self.state, request)  # the page's budget, not the API's
        if not decision.allowed:
            status = 429
            response = problem_response(rate_problem(decision))
            codes = ["RATE_LIMITED"]
            if not decision.record:
                return response  # one event per refused burst (gateway.identity.limits_hook)
        else:
            status, codes = 200, []
            response = Response(
                await self._body(),
                media_type="application/json",
                headers={**decision.headers, "Cache-Control": "no-cache"},
            )
        event = anonymous_read_event(request, "explorer.catalogue", status, codes, started)
        return await answer_once_recorded(self.state.access_log, event, response)
