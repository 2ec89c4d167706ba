"""The dataset page's preview as a GraphQL request (docs/portal.md §Pages): the page's GET form
(`field`, `op`, `value`, `order`, `dir`, `size`, `pages`) becomes one query with variables over the
fields of the anonymous open schema, run by the open tier's own executor; the same query and
variables are what the page shows to copy, as GraphQL, as `curl` and as a workbench link.

Only what the explorer's entry offers is accepted — it is read off the anonymous open schema, so a
filter or order on a field the public may not read in clear is not even expressible here (and the
executor would refuse it with FORBIDDEN_FILTER anyway). Paging is by keyset cursor: `pages` is the
comma-separated `after` cursors of the pages before this one (opaque base64url, never a comma), so
"previous" drops the last one and every page has a stable URL.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.problems import Problem

SIZES = (10, 20, 50, 100)
DEFAULT_SIZE = 20
MAX_PAGES = 200  # cursors kept in a URL
MAX_VALUE = 200


@dataclass
class PreviewForm:
    field: str = ""
    op: str = "eq"
    value: str = ""
    order: str = ""
    direction: str = "ASC"
    size: int = DEFAULT_SIZE
    pages: list[str] = dataclasses.field(default_factory=list)
    measure: str = ""  # the chart's measure, kept while paging and filtering

    @property
    def page(self) -> int:
        return len(self.pages) + 1

    @property
    def after(self) -> str | None:
        return self.pages[-1] if self.pages else None

    def params(self, **change: Any) -> dict[str, str]:
        """The form's state as query parameters (only what differs from the defaults)."""
        state = {
            "field": self.field,
            "op": self.op if self.field else "",
            "value": self.value if self.field else "",
            "order": self.order,
            "dir": self.direction if self.order else "",
            "size": "" if self.size == DEFAULT_SIZE else str(self.size),
            "pages": ",".join(self.pages),
            "measure": self.measure,
        }
        state.update(change)
        return {k: v for k, v in state.items() if v}

    def url(self, base: str, **change: Any) -> str:
        params = self.params(**change)
        return base + ("?" + urlencode(params) if params else "")


def parse(params: Any, entry: dict[str, Any]) -> PreviewForm:
    """The form from query parameters, checked against what the dataset offers (400 otherwise)."""
    form = PreviewForm()
    by_name = {f["name"]: f for f in entry["fields"]}
    name = params.get("field") or ""
    if name:
        f = by_name.get(name)
        if f is None or not f["operators"]:
            raise Problem(400, f"`{name}` cannot be filtered on.", "BAD_REQUEST")
        form.field = name
        form.op = params.get("op") or "eq"
        if form.op not in f["operators"]:
            raise Problem(400, f"`{form.op}` is not a filter of `{name}`.", "BAD_REQUEST")
        form.value = (params.get("value") or "").strip()
        if len(form.value) > MAX_VALUE:
            raise Problem(400, f"The filter value is longer than {MAX_VALUE} characters.", "BAD_REQUEST")
        if not form.value:
            form.field = ""
    order = params.get("order") or ""
    if order:
        if order not in {f["orderBy"] for f in entry["fields"] if f["orderBy"]}:
            raise Problem(400, f"`{order}` cannot order this dataset.", "BAD_REQUEST")
        form.order = order
        form.direction = "DESC" if params.get("dir") == "DESC" else "ASC"
    size = params.get("size") or ""
    if size:
        if not size.isdigit() or int(size) not in SIZES:
            raise Problem(400, f"`size` is one of {', '.join(map(str, SIZES))}.", "BAD_REQUEST")
        form.size = int(size)
    pages = [p for p in (params.get("pages") or "").split(",") if p]
    if len(pages) > MAX_PAGES:
        raise Problem(400, "Too many pages in `pages`; start again from the first page.", "BAD_REQUEST")
    form.pages = pages
    measure = params.get("measure") or ""
    if measure and (measure in by_name or measure == "count"):
        form.measure = measure
    return form


def _typed(value: str, scalar: str | None) -> Any:
    """A typed filter value as the GraphQL variable (left as text when it does not parse, so the
    executor's own coercion error reaches the page)."""
    try:
        if scalar == "Int":
            return int(value)
        if scalar == "Float":
            return float(value)
    except ValueError:
        return value
    if scalar == "Boolean" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def where(form: PreviewForm, entry: dict[str, Any]) -> dict[str, Any] | None:
    if not form.field:
        return None
    f = next(f for f in entry["fields"] if f["name"] == form.field)
    return {form.field: {form.op: _typed(form.value, f["filterType"])}}


def order_by(form: PreviewForm) -> list[dict[str, str]] | None:
    return [{"field": form.order, "direction": form.direction}] if form.order else None


def request(form: PreviewForm, entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(query, variables): exactly what the page runs and shows."""
    variables: dict[str, Any] = {"first": form.size}
    defs = ["$first: Int"]
    args = ["first: $first"]
    if form.after:
        defs.append("$after: String")
        args.append("after: $after")
        variables["after"] = form.after
    w, o = where(form, entry), order_by(form)
    if w is not None and entry["whereType"]:
        defs.append(f"$where: {entry['whereType']}")
        args.append("where: $where")
        variables["where"] = w
    if o is not None and entry["orderByType"]:
        defs.append(f"$orderBy: {entry['orderByType']}")
        args.append("orderBy: $orderBy")
        variables["orderBy"] = o
    fields = "\n".join(f"        {f['name']}" for f in entry["fields"])
    query = (
        f"query Preview({', '.join(defs)}) {{\n"
        f"  {entry['rootField']}({', '.join(args)}) {{\n"
        "    totalCount\n"
        f"    edges {{\n      node {{\n{fields}\n      }}\n    }}\n"
        "    pageInfo { hasNextPage endCursor }\n"
        "  }\n}"
    )
    return query, variables


def curl(endpoint: str, query: str, variables: dict[str, Any], api_key: str | None = None) -> str:
    body = orjson.dumps({"query": query, "variables": variables}).decode()
    lines = [f"curl -s {shlex.quote(endpoint)}", "-H 'Content-Type: application/json'"]
    if api_key is not None:
        lines.append(f"-H {shlex.quote('X-API-Key: ' + api_key)}")
    lines.append(f"-d {shlex.quote(body)}")
    return " \\\n  ".join(lines)


def workbench(query: str, variables: dict[str, Any]) -> str:
    """The query workbench (GraphiQL) with this query and its variables filled in."""
    return "/graphiql?" + urlencode({"query": query, "variables": orjson.dumps(variables).decode()})


def download_params(form: PreviewForm, entry: dict[str, Any]) -> str:
    """The download of the current filter and order (the whole dataset without them)."""
    params: dict[str, str] = {}
    w, o = where(form, entry), order_by(form)
    if w is not None:
        params["where"] = orjson.dumps(w).decode()
    if o is not None:
        params["orderBy"] = orjson.dumps(o).decode()
    return "?" + urlencode(params) if params else ""
