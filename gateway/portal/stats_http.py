"""Public statistics over HTTP (docs/portal.md §Statistics):

  GET /stats?days=N[&dataset=CODE]      the page (Chinese first, no script)
  GET /stats.json?days=N                its machine twin (gateway.portal.stats.stats_document)
  GET /stats/datasets/{code}.json?days=N  one open dataset per day, zero-filled — the dataset
                                          page's usage: {"dataset", "days": [{"date", "calls", "downloads"}]}
  GET /stats/static/stats.css

`days` is 1..366 (default 30; the page offers 7, 30 and 90). A dataset that is not in the open
listing — 不予开放, unpublished or unknown, alike — is 404 NOT_FOUND. Each answer reads the small
daily rollup (gateway.portal.usage), never the audit table; it counts against the portal page's
budget (SHUQIAO_EXPLORER_RATE per address, gateway.portal.budget), not the visitor's API allowance,
and is an access event of the open tier (`stats.page`, `stats.json`, `stats.dataset`), written
before the answer leaves."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from catalogue.service import Catalogue
from gateway.access_log import anonymous_read_event, answer_once_recorded
from gateway.portal.budget import explorer_decision, rate_problem
from gateway.portal.stats import (
    PublicDataset,
    dataset_usage,
    parse_days,
    public_datasets,
    publication_dates,
    usage_report,
)
from gateway.portal.stats_page import PAGE_HEADERS, render_page, render_refusal
from gateway.problems import Problem, problem_response
from gateway.state import GatewayState

CSS = Path(__file__).resolve().parent.parent / "static" / "stats" / "stats.css"
JSON_HEADERS = {"Cache-Control": "no-cache"}
PAGE_MESSAGES = {"NOT_FOUND": "没有这个开放数据集。", "BAD_REQUEST": "统计周期不正确。"}

Answer = Callable[[], Awaitable[Response]]


class StatsEndpoints:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._listing: tuple[Catalogue, list[PublicDataset]] | None = None

    def routes(self) -> list[Route]:
        return [
            Route("/stats", self.page),
            Route("/stats.json", self.json),
            Route("/stats/datasets/{code}.json", self.dataset),
            Route("/stats/static/stats.css", self.css),
        ]

    async def _public(self) -> list[PublicDataset]:
        """The open listing of the current catalogue (recomputed when the catalogue changes)."""
        catalogue = await self.state.registry.refresh()
        if self._listing is None or self._listing[0] is not catalogue:
            dates = await publication_dates(self.state.engine)
            self._listing = (catalogue, public_datasets(catalogue, dates))
        return self._listing[1]

    async def _open_dataset(self, code: str) -> str:
        if code not in {d.code for d in await self._public()}:
            raise Problem(404, f"No open dataset {code!r}.", "NOT_FOUND")
        return code

    async def _answer(self, request: Request, operation: str, make: Answer, page: bool) -> Response:
        """The page budget, the answer (or its refusal), and the access event before it leaves."""
        started = time.perf_counter()
        decision = await explorer_decision(self.state, request)
        if not decision.allowed:
            problem = rate_problem(decision)
            response = (
                self._refusal(
                    problem, f"访问过于频繁：本页的访问额度已用完，请在 {decision.retry_after} 秒后重试。"
                )
                if page
                else problem_response(problem)
            )
            if not decision.record:
                return response  # one event per refused burst (gateway.identity.limits_hook)
            status, codes = 429, [problem.code]
        else:
            try:
                response = await make()
                status, codes = response.status_code, []
            except Problem as problem:
                response = (
                    self._refusal(problem, f"{PAGE_MESSAGES.get(problem.code, '')}{problem.message}")
                    if page
                    else problem_response(problem)
                )
                status, codes = problem.status, [problem.code]
            response.headers.update(decision.headers)
        event = anonymous_read_event(request, operation, status, codes, started)
        return await answer_once_recorded(self.state.access_log, event, response)

    @staticmethod
    def _refusal(problem: Problem, message: str) -> Response:
        return HTMLResponse(
            render_refusal(problem.status, message),
            status_code=problem.status,
            headers={**PAGE_HEADERS, **problem.headers},
        )

    @staticmethod
    def _days(request: Request) -> int:
        try:
            return parse_days(request.query_params.get("days"))
        except ValueError as err:
            raise Problem(400, str(err), "BAD_REQUEST") from None

    async def page(self, request: Request) -> Response:
        async def make() -> Response:
            days = self._days(request)
            datasets = await self._public()
            doc = await usage_report(self.state.engine, datasets, days, datetime.now(UTC))
            code = request.query_params.get("dataset") or None
            selected = None
            if code is not None:
                selected = await dataset_usage(self.state.engine, await self._open_dataset(code), days)
            return HTMLResponse(render_page(doc, selected), headers=PAGE_HEADERS)

        return await self._answer(request, "stats.page", make, page=True)

    async def json(self, request: Request) -> Response:
        async def make() -> Response:
            days = self._days(request)
            doc = await usage_report(self.state.engine, await self._public(), days, datetime.now(UTC))
            return Response(orjson.dumps(doc), media_type="application/json", headers=JSON_HEADERS)

        return await self._answer(request, "stats.json", make, page=False)

    async def dataset(self, request: Request) -> Response:
        async def make() -> Response:
            days = self._days(request)
            code = await self._open_dataset(request.path_params["code"])
            doc = await dataset_usage(self.state.engine, code, days)
            return Response(orjson.dumps(doc), media_type="application/json", headers=JSON_HEADERS)

        return await self._answer(request, "stats.dataset", make, page=False)

    async def css(self, request: Request) -> Response:
        return FileResponse(
            CSS, media_type="text/css; charset=utf-8", headers={"X-Content-Type-Options": "nosniff"}
        )
