"""The portal's server-rendered pages (docs/portal.md §Pages): Jinja2 templates in
gateway/templates/portal/, Chinese first with English (`?lang=en`, gateway.portal.i18n), working
without JavaScript; the page script (gateway/static/explorer/explorer.js) only adds copy buttons,
auto-submitting selects and the usage figures.

    GET /explore                        the catalogue: search, facets with counts, sort, paging —
                                        the same results as /explore.json (gateway.portal.search)
    GET /explore/datasets/{code}        one dataset: metadata, 信息项, preview (filter, sort, pages),
                                        charts over the whole dataset, usage, GraphQL/curl
    GET /explore/datasets/{code}.json   its machine twin (the same parameters, the same content)

What they show is the anonymous open schema's: the listing is read off it (gateway.explorer), the
preview is run by the open tier's own executor on that schema (the explorer's preview endpoint,
so masking, FORBIDDEN and FORBIDDEN_FILTER are exactly /open/graphql's), and the charts aggregate
only fields the open policy allows in clear (gateway.portal.charts). Every page request counts
against the page's own budget (gateway.portal.budget, never the visitor's API allowance) and is
one access event, recorded before the answer leaves: `explorer.page` for the catalogue, the
preview's GraphQL event (operation `Preview`) with the charts' aggregate reads added for a dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from math import ceil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from catalogue.freshness import DatasetStatus, load_statuses
from gateway.access_log import AccessEvent, anonymous_read_event, answer_once_recorded
from gateway.explorer import API_KEY_HEADER, DOWNLOAD_FORMATS, ENDPOINT, OPERATORS, PAGE_HEADERS
from gateway.portal import charts, i18n, preview, svg
from gateway.portal.budget import ExplorerPreview, explorer_decision
from gateway.portal.listing import FORMAT_LABELS, OpenDataset, open_listing, public_base
from gateway.portal.search import FACETS, SORTS, USED_DAYS, search
from gateway.portal.usage import recent_use
from gateway.problems import Problem, problem_response
from gateway.state import GatewayState
from policies.model import Action, Tier
from resolvers.context import ANONYMOUS, FieldAccess
from resolvers.execute import Outcome
from schema.naming import camel as _camel

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates" / "portal"))
PER_PAGE = 20
CHART_TTL = 300.0  # seconds an aggregate is reused while the dataset's freshness is unchanged
STATS_PREFIX = "/stats"
SEARCH_CACHE = 256  # search states remembered per listing


@dataclass
class Rendered:
    """A page's outcome before it becomes HTML or JSON."""

    status: int
    context: dict[str, Any]
    codes: list[str]
    outcome: Outcome | None = None
    query: str | None = None
    variables: dict[str, Any] | None = None
    chart_reads: list[dict[str, Any]] | None = None
    chart_fields: list[dict[str, Any]] | None = None


def _cell(value: Any) -> str:
    """A value as a table cell: as JSON would read (true/false, integers without .0), null empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _date(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:10]
    return value.astimezone(UTC).date().isoformat() if value.tzinfo else value.date().isoformat()


class PortalPages:
    def __init__(self, state: GatewayState, preview_endpoint: ExplorerPreview) -> None:
        self.state = state
        self.preview = preview_endpoint
        self._by_code: tuple[list[OpenDataset], dict[str, OpenDataset]] | None = None
        self._charts: dict[tuple[Any, ...], tuple[float, charts.ChartData]] = {}
        self._stats: bool | None = None
        self._searches: tuple[list[OpenDataset] | None, dict[tuple[Any, ...], dict[str, Any]]] = (None, {})

    # ------------------------------------------------------------------ shared
    def _lookup(self, listing: list[OpenDataset]) -> dict[str, OpenDataset]:
        if self._by_code is None or self._by_code[0] is not listing:
            self._by_code = (listing, {ds.code: ds for ds in listing})
        return self._by_code[1]

    async def _search(self, listing: list[OpenDataset], params: dict[str, str]) -> dict[str, Any]:
        """`search()` of this listing, remembered per search state until the listing changes (a
        catalogue change builds a new one): the landing page and popular facets are asked often.
        Sorting by use reads the usage rollup each time (it changes without the catalogue)."""
        if params.get("sort") == "used":
            return search(listing, params, usage=await recent_use(self.state.engine, USED_DAYS))
        key = tuple(sorted((k, v) for k, v in params.items() if k in (*FACETS, "q", "sort")))
        if self._searches[0] is not listing:
            self._searches = (listing, {})
        cache = self._searches[1]
        doc = cache.get(key)
        if doc is None:
            doc = search(listing, params)
            if len(cache) >= SEARCH_CACHE:
                cache.pop(next(iter(cache)))
            cache[key] = doc
        return doc

    def _has_stats(self, request: Request) -> bool:
        """Whether this gateway serves the public statistics (/stats): the page links to them only then."""
        if self._stats is None:
            paths = [getattr(r, "path", "") for r in request.app.routes]
            self._stats = any(p == STATS_PREFIX or p.startswith(STATS_PREFIX + "/") for p in paths)
        return self._stats

    def _base_context(self, request: Request, lang: str) -> dict[str, Any]:
        t = i18n.translator(lang)
        params = {k: v for k, v in request.query_params.items() if k != "lang"}
        other = "en" if lang == "zh" else "zh"
        return {
            "t": t,
            "lang": lang,
            "html_lang": i18n.HTML_LANG[lang],
            "switch_url": request.url.path + "?" + urlencode({**params, "lang": other}),
            "switch_lang": i18n.HTML_LANG[other],
            "endpoint": ENDPOINT,
            "has_stats": self._has_stats(request),
        }

    def _name(self, ds: OpenDataset, lang: str) -> str:
        return (ds.spec.name_en or ds.spec.name) if lang == "en" else ds.spec.name

    def _dept(self, ds: OpenDataset, lang: str) -> str:
        return (ds.department.name_en or ds.department.name) if lang == "en" else ds.department.name

    async def _answer(
        self,
        request: Request,
        template: str,
        lang: str,
        explicit: bool,
        started: float,
        render: Any,
    ) -> Response:
        """Budget, render, remember the language, record the access event, answer."""
        decision = await explorer_decision(self.state, request)
        context = self._base_context(request, lang)
        t = context["t"]
        rendered: Rendered
        if not decision.allowed:
            context["message"] = t("err.rate", seconds=decision.retry_after)
            rendered = Rendered(429, context, ["RATE_LIMITED"])
            template = "error.html"
        else:
            try:
                rendered = await render(context)
            except Problem as problem:
                key = "err.not_found" if problem.status == 404 else "err.bad_request"
                context["message"] = t(key, message=problem.message)
                rendered = Rendered(problem.status, context, [problem.code])
                template = "error.html"
        headers = {**PAGE_HEADERS, **decision.headers, "Cache-Control": "no-cache", "Vary": "Cookie"}
        if template == "json":
            if rendered.status >= 400:
                response = problem_response(
                    Problem(rendered.status, rendered.context["message"], rendered.codes[0], decision.headers)
                )
            else:
                response = Response(
                    orjson.dumps(rendered.context["json"], default=str),
                    media_type="application/json",
                    headers={**decision.headers, "Cache-Control": "no-cache"},
                )
        else:
            response = TEMPLATES.TemplateResponse(
                request, template, rendered.context, status_code=rendered.status, headers=headers
            )
            i18n.remember(response, lang, explicit)
        if not decision.allowed and not decision.record:
            return response  # one event per refused burst (gateway.identity.limits_hook)
        event = self._event(request, rendered, started)
        return await answer_once_recorded(self.state.access_log, event, response)

    def _event(self, request: Request, rendered: Rendered, started: float) -> AccessEvent:
        if rendered.query is None:
            return anonymous_read_event(request, "explorer.page", rendered.status, rendered.codes, started)
        event = self.preview._event(
            request,
            ANONYMOUS,
            rendered.outcome,
            rendered.status,
            rendered.codes,
            rendered.query,
            rendered.variables,
            started,
        )
        if rendered.chart_reads:
            event.reads.extend(rendered.chart_reads)
            known = {(f["dataset"], f["field"]) for f in event.fields}
            event.fields.extend(
                f for f in rendered.chart_fields or [] if (f["dataset"], f["field"]) not in known
            )
        return event

    # ------------------------------------------------------------------ the catalogue
    async def catalogue(self, request: Request) -> Response:
        started = time.perf_counter()
        lang, explicit = i18n.choose(request)
        return await self._answer(
            request,
            "catalogue.html",
            lang,
            explicit,
            started,
            lambda ctx: self._catalogue(request, ctx, lang),
        )

    async def _catalogue(self, request: Request, ctx: dict[str, Any], lang: str) -> Rendered:
        t = ctx["t"]
        listing = await open_listing(self.state)
        by_code = self._lookup(listing)
        params = dict(request.query_params)
        doc = await self._search(listing, params)
        page_text = params.get("page") or "1"
        if not page_text.isdigit() or int(page_text) < 1:
            raise Problem(400, "`page` is a positive integer.", "BAD_REQUEST")
        pages = max(1, ceil(doc["count"] / PER_PAGE))
        page = min(int(page_text), pages)
        shown = doc["results"][(page - 1) * PER_PAGE : page * PER_PAGE]
        results = []
        for r in shown:
            ds = by_code[r["code"]]
            results.append(
                {
                    "code": ds.code,
                    "url": f"/explore/datasets/{ds.code}",
                    "name": self._name(ds, lang),
                    "description": ds.spec.description,
                    "department": self._dept(ds, lang),
                    "category": i18n.label(t, "category", ds.spec.category.value),
                    "cycle": i18n.label(t, "cycle", ds.spec.update_cycle),
                    "open": i18n.label(t, "open", ds.spec.open.value),
                    "conditional": ds.conditional,
                    "resource_code": ds.spec.resource_code,
                    "modified": _date(ds.modified),
                }
            )
        depts = {ds.department.code: self._dept(ds, lang) for ds in listing}
        facets = []
        for facet in FACETS:
            items = []
            for item in doc["facets"][facet]:
                value = item["value"]
                if facet == "dept":
                    label = depts.get(value, item["label"])
                elif facet in ("category", "open", "cycle"):
                    label = i18n.label(t, facet, value)
                else:
                    label = item["label"]
                items.append({**item, "label": label})
            if items:
                facets.append({"name": facet, "title": t(f"facet.{facet}"), "items": items})
        state = {k: v for k, v in doc["query"].items() if v and not (k == "sort" and not params.get("sort"))}

        def page_url(n: int) -> str:
            q = {**state, **({"page": str(n)} if n > 1 else {})}
            return "/explore" + ("?" + urlencode(q) if q else "")

        ctx.update(
            {
                "q": doc["query"]["q"],
                "sort": params.get("sort") or "",
                "sorts": SORTS,
                "chosen": {f: doc["query"][f] for f in FACETS if f in doc["query"]},
                "count": doc["count"],
                "results": results,
                "facets": facets,
                "page": page,
                "pages": pages,
                "first_url": page_url(1),
                "prev_url": page_url(page - 1) if page > 1 else None,
                "next_url": page_url(page + 1) if page < pages else None,
                "json_url": "/explore.json" + ("?" + urlencode(state) if state else ""),
                "clear_url": "/explore" if state else None,
            }
        )
        return Rendered(200, ctx, [])

    # ------------------------------------------------------------------ one dataset
    async def dataset(self, request: Request) -> Response:
        started = time.perf_counter()
        lang, explicit = i18n.choose(request)
        return await self._answer(
            request,
            "dataset.html",
            lang,
            explicit,
            started,
            lambda ctx: self._dataset(request, ctx, lang),
        )

    async def dataset_json(self, request: Request) -> Response:
        started = time.perf_counter()
        lang, _ = i18n.choose(request)
        return await self._answer(
            request, "json", lang, False, started, lambda ctx: self._dataset(request, ctx, lang, as_json=True)
        )

    async def _dataset(
        self, request: Request, ctx: dict[str, Any], lang: str, as_json: bool = False
    ) -> Rendered:
        t = ctx["t"]
        code = request.path_params["code"]
        listing = await open_listing(self.state)
        ds = self._lookup(listing).get(code)
        if ds is None:
            raise Problem(404, f"No open dataset {code!r}.", "NOT_FOUND")
        entry = ds.entry
        form_error: Problem | None = None
        try:
            form = preview.parse(request.query_params, entry)
        except Problem as problem:  # shown on the page, beside the form, rather than instead of it
            form, form_error = preview.PreviewForm(), problem
        query, variables = preview.request(form, entry)
        built = await self.state.registry.schema(Tier.OPEN)  # the anonymous open schema
        outcome = await self.preview._execute(ANONYMOUS, query, variables, None, built)
        status = 400 if outcome.request_error or form_error else 200
        codes = [form_error.code] if form_error else outcome.error_codes
        data = (outcome.data or {}).get(entry["rootField"]) if outcome.data else None
        columns = entry["fields"]
        rows = [[_cell(e["node"].get(f["name"])) for f in columns] for e in data["edges"]] if data else []
        total = data["totalCount"] if data else None
        info: dict[str, Any] = data["pageInfo"] if data else {"hasNextPage": False, "endCursor": None}
        status_row = (await load_statuses(self.state.engine)).get(code)
        chart = await self._chart_view(request, ds, status_row, t)
        base = public_base(self.state)
        self_url = f"/explore/datasets/{code}"
        downloads_query = preview.download_params(form, entry)
        api_key = t("api.key_placeholder") if ds.conditional else None
        ctx.update(
            {
                "ds": ds,
                "name": self._name(ds, lang),
                "metadata": (metadata := self._metadata(ds, status_row, t, lang)),
                "meta": self._metadata_rows(metadata, t),
                "conditional": ds.conditional,
                "open_label": i18n.label(t, "open", ds.spec.open.value),
                "api_key_header": API_KEY_HEADER,
                "apply_url": "/enterprise/apply?" + urlencode({"dataset": code}),
                "fields": [self._field_row(ds, f, t) for f in columns],
                "form": form,
                "sizes": preview.SIZES,
                "columns": columns,
                "rows": rows,
                "total": total,
                "errors": (
                    [{"code": form_error.code, "message": form_error.message}]
                    if form_error
                    else [
                        {"code": e.get("extensions", {}).get("code", ""), "message": e.get("message", "")}
                        for e in outcome.errors
                    ]
                ),
                "op_labels": [(op, t(f"op.{op}")) for op in OPERATORS],
                "first_url": form.url(self_url, pages="") if form.pages else None,
                "prev_url": form.url(self_url, pages=",".join(form.pages[:-1])) if form.pages else None,
                "next_url": (
                    form.url(self_url, pages=",".join([*form.pages, info["endCursor"]]))
                    if info["hasNextPage"] and info["endCursor"] and len(form.pages) < preview.MAX_PAGES
                    else None
                ),
                "clear_url": self_url,
                "downloads": [
                    {
                        "format": fmt,
                        "label": FORMAT_LABELS[fmt],
                        "url": f"/open/download/{code}.{fmt}{downloads_query}",
                    }
                    for fmt in DOWNLOAD_FORMATS
                ],
                "download_scope": t("dl.scope_filter") if downloads_query else t("dl.scope_all"),
                "download_curl": (
                    f"curl -OJ -H '{API_KEY_HEADER}: {api_key}' "
                    f"'{base}/open/download/{code}.csv{downloads_query}'"
                    if ds.conditional
                    else None
                ),
                "chart": chart,
                "query": query,
                "variables": orjson.dumps(variables, option=orjson.OPT_INDENT_2).decode(),
                "curl": preview.curl(base + ENDPOINT, query, variables, api_key),
                "workbench_url": preview.workbench(query, variables),
                "json_url": self_url + ".json" + (("?" + request.url.query) if request.url.query else ""),
                "stats_url": f"/stats/datasets/{code}.json",
                "metadata_links": [
                    ("DCAT Turtle", self_url + ".ttl"),
                    ("DCAT JSON-LD", self_url + ".jsonld"),
                    ("CKAN", f"/api/3/action/package_show?id={code}"),
                ],
            }
        )
        if as_json:
            ctx["json"] = self._json(ctx, outcome, variables)
        return Rendered(
            status,
            ctx,
            codes,
            outcome=outcome,
            query=query,
            variables=variables,
            chart_reads=chart.get("reads"),
            chart_fields=chart.get("fields"),
        )

    def _metadata(
        self, ds: OpenDataset, status_row: DatasetStatus | None, t: i18n.Translate, lang: str
    ) -> dict[str, Any]:
        """The public metadata, machine values (the JSON twin's `metadata`)."""
        spec = ds.spec
        shown = {f["name"] for f in ds.entry["fields"]}
        entity = None
        if spec.entity is not None and spec.entity_field and _camel(spec.entity_field) in shown:
            entity = {"entity": spec.entity.value, "key": _camel(spec.entity_field)}
        updated = (status_row.last_change_at if status_row is not None else None) or ds.modified
        # Not the catalogue's 开放条件 prose: it may name the fields it withholds, which the open
        # schema does not (the open attribute says what the public needs to know).
        return {
            "resourceCode": spec.resource_code,
            "department": {"code": ds.department.code, "name": self._dept(ds, lang)},
            "category": spec.category.value,
            "theme": spec.theme or None,
            "updateCycle": spec.update_cycle,
            "openAttribute": spec.open.value,
            "licence": spec.licence or None,
            "contact": spec.contact or None,
            "firstPublished": _date(ds.created) or None,
            "lastUpdated": _date(updated) or None,
            "rowCount": status_row.row_count if status_row is not None else None,
            "entity": entity,
            "rootField": ds.entry["rootField"],
            "keywords": ds.keywords(),
        }

    def _metadata_rows(self, meta: dict[str, Any], t: i18n.Translate) -> list[tuple[str, str]]:
        """The same metadata as the page's labelled rows."""
        missing = t("ds.not_stated")
        entity = meta["entity"]
        rows = [
            (t("ds.resource_code"), meta["resourceCode"]),
            (t("ds.department"), meta["department"]["name"]),
            (t("ds.category"), i18n.label(t, "category", meta["category"])),
            (t("ds.theme"), meta["theme"] or missing),
            (t("ds.cycle"), i18n.label(t, "cycle", meta["updateCycle"])),
            (t("ds.open"), i18n.label(t, "open", meta["openAttribute"])),
            (t("ds.licence"), meta["licence"] or missing),
            (t("ds.contact"), meta["contact"] or missing),
            (t("ds.published"), meta["firstPublished"] or missing),
            (t("ds.updated"), meta["lastUpdated"] or missing),
            (t("ds.rows"), f"{meta['rowCount']:,}" if meta["rowCount"] is not None else t("ds.not_loaded")),
            (t("ds.entity"), f"{t('entity.' + entity['entity'])} · {entity['key']}" if entity else missing),
            (t("ds.root"), meta["rootField"]),
        ]
        if meta["keywords"]:
            rows.append((t("ds.tags"), "、".join(meta["keywords"])))
        return rows

    def _field_row(self, ds: OpenDataset, f: dict[str, Any], t: i18n.Translate) -> dict[str, Any]:
        spec = next((s for s in ds.spec.fields if _camel(s.name) == f["name"]), None)
        notes = [f["description"]] if f["description"] else []
        if f["masked"]:
            notes.append(t("field.masked"))
        if f["operators"]:
            notes.append(t("field.filterable"))
        return {
            "title": f["title"],
            "name": f["name"],
            "type": f["type"],
            "level": spec.level.name if spec is not None else "",
            "notes": "；".join(notes),
        }

    async def _chart_view(
        self, request: Request, ds: OpenDataset, status_row: DatasetStatus | None, t: i18n.Translate
    ) -> dict[str, Any]:
        """The charts, their data tables and what they read (for the audit event); only `none`
        (why not) when the dataset has nothing the public may chart."""
        open_fields = [f["name"] for f in ds.entry["fields"]]
        measure = request.query_params.get("measure")
        plan = charts.plan_charts(ds.spec, open_fields, measure)
        if plan is None:
            return {"none": t("ch.unavailable") if ds.conditional else t("ch.none")}
        freshness = (
            (status_row.row_count, status_row.last_change_at, status_row.last_load_at) if status_row else None
        )
        key = (ds.spec, plan.measure.name if plan.measure else None, freshness)
        now = time.monotonic()
        hit = self._charts.get(key)
        if hit is not None and hit[0] > now:
            data = hit[1]
        else:
            async with self.state.engine.connect() as conn:
                data = await charts.aggregate(conn, plan)
            if len(self._charts) > 256:
                self._charts.clear()
            self._charts[key] = (now + CHART_TTL, data)
        measure_name = plan.measure.title if plan.measure else t("ch.count")
        shown_measure = t("ch.series_avg", measure=measure_name) if plan.measure else measure_name
        view: dict[str, Any] = {
            "intro": t("ch.whole", rows=f"{data.rows:,}"),
            "measures": [(_camel(f.name), f.title) for f in plan.measures] + [(charts.COUNT, t("ch.count"))],
            "measure": _camel(plan.measure.name) if plan.measure else charts.COUNT,
            "has_measure": plan.measure is not None,
            "value_title": t("ch.average") if plan.measure else t("ch.rows"),
            "group_title": plan.district.title if plan.district else "",
            "series": None,
            "groups": None,
        }
        if plan.time is not None and data.series:
            title = t(
                "ch.series", measure=shown_measure, time=plan.time.title, bucket=t(f"bucket.{data.bucket}")
            )
            first, last = data.series[0].label, data.series[-1].label
            low, high = min(p.value for p in data.series), max(p.value for p in data.series)
            desc = f"{first} – {last}: min {low:,.1f}, max {high:,.1f}"
            view["series"] = {
                "title": title,
                "svg": svg.line_chart(data.series, "chart-series", title, desc),
                "points": [(p.label, p.rows, _fmt(p.value) if plan.measure else "") for p in data.series],
            }
        if plan.district is not None and data.groups:
            title = t("ch.by_district", district=plan.district.title, measure=shown_measure)
            desc = ", ".join(f"{p.label} {_fmt(p.value)}" for p in data.groups[:10])
            view["groups"] = {
                "title": title,
                "svg": svg.bar_chart(data.groups, "chart-groups", title, desc),
                "points": [(p.label, p.rows, _fmt(p.value) if plan.measure else "") for p in data.groups],
                "more": t("ch.more", n=data.other_groups) if data.other_groups else "",
            }
        view["reads"] = [
            {
                "dataset": ds.code,
                "rows": data.rows,
                "aggregate": [f.name for f in plan.fields()],
                "grant_id": None,
                "purpose": None,
            }
        ]
        view["fields"] = [
            FieldAccess(
                ds.code, f.name, Action.ALLOW, "open data (aggregated for the explorer's charts)"
            ).as_dict()
            for f in plan.fields()
        ]
        return view

    def _json(self, ctx: dict[str, Any], outcome: Outcome, variables: dict[str, Any]) -> dict[str, Any]:
        ds: OpenDataset = ctx["ds"]
        base = public_base(self.state)
        chart = ctx["chart"] or {}
        return {
            **ds.entry,
            "downloads": ds.downloads(base),
            "dcat": {
                "turtle": f"{base}/explore/datasets/{ds.code}.ttl",
                "jsonld": f"{base}/explore/datasets/{ds.code}.jsonld",
            },
            "ckan": f"{base}/api/3/action/package_show?id={ds.code}",
            "modified": ds.modified.isoformat() if ds.modified else None,
            "page": f"{base}/explore/datasets/{ds.code}",
            "metadata": ctx["metadata"],
            "preview": {
                "query": ctx["query"],
                "variables": variables,
                "data": outcome.data,
                "errors": outcome.errors or None,
                "next": ctx["next_url"]
                and ctx["next_url"].replace(
                    f"/explore/datasets/{ds.code}?", f"/explore/datasets/{ds.code}.json?"
                ),
            },
            "charts": {k: chart[k] for k in ("measure", "measures") if k in chart}
            | {
                name: {"title": chart[name]["title"], "points": chart[name]["points"]}
                for name in ("series", "groups")
                if chart.get(name)
            },
            "curl": ctx["curl"],
            "workbench": ctx["workbench_url"],
        }


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"
