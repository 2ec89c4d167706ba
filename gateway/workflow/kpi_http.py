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
import io
from datetime import date

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from gateway.identity.bearer import BearerProtector
from gateway.problems import Problem, problem_response
from gateway.workflow.common import WorkflowError
from gateway.workflow.kpi import CSV_COLUMNS, kpi_report

SCOPES = ["share:read", "admin"]  # any one admits the per-department figures


class KpiEndpoints:
    def __init__(self, engine: AsyncEngine, bearer: BearerProtector) -> None:
        self.engine = engine
        self.bearer = bearer

    async def _report(self, request: Request) -> tuple[dict[str, object], list[dict[str, object]]]:
        params = request.query_params
        department = params.get("department") or None
        per_department = False
        if request.headers.get("authorization") or department is not None:
            await self.bearer.validate_request(request)  # BearerRefused is a Problem: 401 / 403
            per_department = True
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
