"""GET /kpi.json and GET /kpi.csv: the KPIs' machine twins (the same figures as `shuqiao kpi`
and the admin API's `kpis`).

Public: the overall figures, their targets, definitions and trend — aggregates the plan itself
publishes. With a bearer token holding share:read or admin (the one bearer check,
gateway.identity.bearer): every department's figures too, and `?department=D` for one
department's figures and trend. A token that is sent is checked even where none is needed: a bad
one is refused (401), never quietly served the public view.

    ?department=samr   one department (bearer needed)
    ?since=YYYY-MM-DD&until=YYYY-MM-DD   the trend's period (default the last 90 days)"""

from __future__ import annotations

import csv
import html
import io
from datetime import date
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from gateway.identity.bearer import BearerProtector
from gateway.identity.limits_hook import check_rate
from gateway.identity.ratelimit import RateLimiter
from gateway.problems import Problem, problem_response
from gateway.workflow.common import WorkflowError
from gateway.workflow.kpi import CSV_COLUMNS, kpi_report
from resolvers.context import ANONYMOUS

SCOPES = ["share:read", "admin"]  # any one admits the per-department figures


class KpiEndpoints:
    def __init__(self, engine: AsyncEngine, bearer: BearerProtector, limiter: RateLimiter) -> None:
        self.engine = engine
        self.bearer = bearer
        self.limiter = limiter  # anonymous callers: the open tier's per-address limit

    async def _limit(self, request: Request) -> None:
        """Every public answer is computed live (a dozen queries): limited per address, as the
        open tier and the explorer are (SHUQIAO_ANONYMOUS_RATE)."""
        decision = await check_rate(self.limiter, request, ANONYMOUS)
        if not decision.allowed:
            message = f"Rate limit exceeded ({decision.policy}); retry after {decision.retry_after} s."
            raise Problem(429, message, "RATE_LIMITED", decision.headers)

    async def _report(self, request: Request) -> tuple[dict[str, object], list[dict[str, object]]]:
        params = request.query_params
        department = params.get("department") or None
        per_department = False
        if request.headers.get("authorization") or department is not None:
            await self.bearer.validate_request(request)  # BearerRefused is a Problem: 401 / 403
            per_department = True
        else:
            await self._limit(request)
        try:
            since, until = _day(params.get("since"), "since"), _day(params.get("until"), "until")
            report = await kpi_report(self.engine, since=since, until=until, department=department)
        except WorkflowError as err:
            raise Problem(400, str(err), "BAD_REQUEST") from None
        doc = report.document(per_department=per_department, department=department)
        return doc, report.rows(per_department=per_department, department=department)

    async def json(self, request: Request) -> Response:
        try:
            doc, _ = await self._report(request)
        except Problem as problem:
            return problem_response(problem, headers=_CACHE)
        return Response(orjson.dumps(doc), media_type="application/json", headers=_CACHE)

    async def page(self, request: Request) -> Response:
        """GET /kpi: the public figures as a page (a bearer is not asked for: browsers send none)."""
        try:
            await self._limit(request)
        except Problem as problem:
            return problem_response(problem)
        report = await kpi_report(self.engine)
        body = render_page(report.document(per_department=False))
        return Response(body, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def csv(self, request: Request) -> Response:
        try:
            _, rows = await self._report(request)
        except Problem as problem:
            return problem_response(problem, headers=_CACHE)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={**_CACHE, "Content-Disposition": 'inline; filename="kpi.csv"'},
        )


_CACHE = {"Cache-Control": "no-store"}  # per-department answers depend on the token


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise WorkflowError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from None


# ---------------------------------------------------------------- the human page (GET /kpi)

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
BAR, TREND_W, TREND_H = 220, 220, 44


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _bar(value: float | None, target: float) -> str:
    """The figure against its target: a filled bar and a mark at the target."""
    width = 0 if value is None else round(min(value, 1.0) * BAR)
    colour = "#1c6b34" if value is not None and value >= target else "#b45309"
    mark = round(target * BAR)
    return (
        f'<svg class="kpi-bar" width="{BAR}" height="18" viewBox="0 0 {BAR} 18" role="img" '
        f'aria-label="{_pct(value)}，目标 {_pct(target)}">'
        f'<rect x="0" y="3" width="{BAR}" height="12" fill="#e8edf3"/>'
        f'<rect x="0" y="3" width="{width}" height="12" fill="{colour}"/>'
        f'<line x1="{mark}" x2="{mark}" y1="0" y2="18" stroke="#123c69" stroke-width="2"/></svg>'
    )


def _trend(points: list[dict[str, Any]]) -> str:
    values = [(p["day"], p["value"]) for p in points if isinstance(p.get("value"), float | int)]
    if len(values) < 2:
        return '<span class="hint">快照不足两天（shuqiao kpi snapshot）</span>'
    step = TREND_W / (len(values) - 1)
    coords = " ".join(
        f"{round(i * step, 1)},{round(TREND_H - 2 - float(v) * (TREND_H - 4), 1)}"
        for i, (_, v) in enumerate(values)
    )
    first, last = values[0][0], values[-1][0]
    return (
        f'<svg class="kpi-trend" width="{TREND_W}" height="{TREND_H}" viewBox="0 0 {TREND_W} {TREND_H}" '
        f'role="img" aria-label="{html.escape(str(first))} – {html.escape(str(last))}">'
        f'<polyline points="{coords}" fill="none" stroke="#123c69" stroke-width="2"/></svg><br>'
        f'<span class="hint">{html.escape(str(first))} – {html.escape(str(last))}</span>'
    )


def render_page(doc: dict[str, Any]) -> str:
    """The public KPI page, Chinese first, server-rendered (no script): the overall figures, their
    targets, definitions and trend — the same document as /kpi.json."""
    rows, definitions = [], []
    for k in doc["kpis"]:
        met = {True: "达标 met", False: "未达标 below", None: "无数据 no data"}[k["met"]]
        rows.append(
            "<tr>"
            f'<th scope="row">{html.escape(k["name"])}'
            f'<span class="gql">{html.escape(k["name_en"])}</span></th>'
            f'<td class="num">{_pct(k["value"])}</td>'
            f'<td class="num">{k["numerator"]} / {k["denominator"]}</td>'
            f'<td class="num">{_pct(k["target"])}</td><td>{met}</td>'
            f"<td>{_bar(k['value'], k['target'])}</td><td>{_trend(k['trend'])}</td>"
            "</tr>"
        )
        definitions.append(
            f"<dt>{html.escape(k['name'])}</dt><dd>{html.escape(k['definition'])}"
            f"<br><small>分子 numerator: {html.escape(k['numerator_is'])}；"
            f"分母 denominator: {html.escape(k['denominator_is'])}</small></dd>"
        )
    as_of = html.escape(str(doc["as_of"])[:19].replace("T", " "))
    return f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>数桥 数据共享开放指标 · Shuqiao KPIs</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/explore/static/explorer.css">
</head>
<body>
<header>
  <h1>数桥 数据共享开放指标 <small>Shuqiao KPIs</small></h1>
  <nav><a href="/kpi.json">JSON</a><a href="/kpi.csv">CSV</a><a href="/explore">开放目录 open data</a></nav>
</header>
<main>
<aside>
  <h2>指标说明 <small>definitions</small></h2>
  <dl>{"".join(definitions)}</dl>
</aside>
<section>
  <h2>全省 <small>overall, as of {as_of} UTC</small></h2>
  <div class="table-wrap"><table id="kpis">
    <thead><tr><th>指标</th><th>当前值</th><th>分子 / 分母</th><th>目标</th><th></th><th>对比目标</th>
    <th>趋势 trend</th></tr></thead>
    <tbody>{"".join(rows)}</tbody>
  </table></div>
  <p class="hint">竖线为省级规划目标。各部门的分项指标见 <code>/kpi.json</code>
  （需持有 share:read 或 admin 范围的令牌）。
  Per-department figures: <code>/kpi.json</code> with a bearer token (share:read or admin).</p>
</section>
</main>
</body>
</html>
"""
