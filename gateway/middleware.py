"""Request ids (accepted from X-Request-ID when well-formed, otherwise generated; echoed back)
and the catch-all that turns any failure into an audited answer."""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access_log import AccessEvent
from gateway.client_address import client_address
from gateway.outages import classify
from gateway.problems import INTERNAL, Problem, problem_page, problem_response

log = logging.getLogger("shuqiao")

# The access-log tier of a request that failed outside the GraphQL tiers (which record their own).
FAILURE_TIER = "http"

_VALID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
# Set in the request's state by RequestIdMiddleware's `send` wrapper, which every answer passes
# through: FailureMiddleware inside it reads it instead of wrapping `send` a second time.
RESPONSE_STARTED = "response_started"


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits, what `uuid.uuid4().hex` gives, without
    building a `UUID` object (a measurable part of a cached lookup)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")  # the last one, as a dict of the headers kept
        request_id = given if _VALID.match(given) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state[RESPONSE_STARTED] = False

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                state[RESPONSE_STARTED] = True
            await send(message)

        await self.app(scope, receive, send_with_id)


class FailureMiddleware:
    """Every exception a route lets out becomes an answer: a 503 with Retry-After when a
    dependency is down (gateway.outages.classify), else a 500 — in one JSON shape (RFC 6749's
    on /oauth/*), with no exception text, and recorded on the access log. It sits inside
    RequestIdMiddleware and the signing middleware, so the answer carries X-Request-ID and is
    signed where the path is. (The GraphQL tiers catch and audit their own failures.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.get("state", {})
        tracked = RESPONSE_STARTED in state  # RequestIdMiddleware outside notes the status line
        responded = False

        async def tracking(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, receive, send if tracked else tracking)
        except Exception as err:
            if state.get(RESPONSE_STARTED) if tracked else responded:
                raise  # the status line is out: nothing better can be said; let the server log it
            problem = failure_problem(scope, err)
            await _record(scope, problem, started)
            await error_response(scope, problem)(scope, receive, send)


def failure_problem(scope: Scope, err: BaseException) -> Problem:
    """The answer for an exception (logged here: by type for a dependency, with the traceback
    otherwise; the request id ties the log line to the client's report)."""
    request_id = scope.get("state", {}).get("request_id", "")
    problem = classify(err)
    if problem is None:
        log.error("request %s on %s failed", request_id, scope.get("path", ""), exc_info=err)
        return INTERNAL
    log.warning("request %s answered %s: %s", request_id, problem.code, type(err).__name__)
    return problem


def error_response(scope: Scope, problem: Problem) -> Response:
    if scope.get("path", "").startswith("/oauth/"):  # RFC 6749 §5.2's shape for its endpoints
        error = "temporarily_unavailable" if problem.status == 503 else "server_error"
        return JSONResponse(
            {"error": error, "error_description": problem.message},
            status_code=problem.status,
            headers={**problem.headers, "Cache-Control": "no-store"},
        )
    if _wants_page(scope):
        return problem_page(problem, scope.get("state", {}).get("request_id", ""))
    return problem_response(problem)


def _wants_page(scope: Scope) -> bool:
    """A browser navigating to a page (GET, HTML accepted before JSON), not a program: programs
    and the pages' own scripts ask for JSON or send no such Accept header."""
    if scope.get("method") not in ("GET", "HEAD"):
        return False
    accept = Request(scope).headers.get("accept", "")
    html = accept.find("text/html")
    json = accept.find("application/json")
    return html != -1 and (json == -1 or html < json)


async def _record(scope: Scope, problem: Problem, started: float) -> None:
    """One access event for the failed request; if even that fails, the log line above stands."""
    gateway = getattr(getattr(scope.get("app"), "state", None), "gateway", None)
    if gateway is None:
        return
    request = Request(scope)
    path = scope.get("path", "")
    event = AccessEvent(
        request_id=scope.get("state", {}).get("request_id", ""),
        tier=FAILURE_TIER,
        principal_kind="anonymous",  # who called is not known here: the route failed before saying
        principal_id="",
        consumer=None,
        client_address=client_address(request),
        operation_name=f"{scope.get('method', '')} {path}"[:200],
        operation_type=None,
        query_digest=None,
        status=problem.status,
        error_codes=[problem.code],
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    try:
        await gateway.access_log.record(event)
    except Exception as err:  # the answer stands; the log line above is the record
        log.warning(
            "request %s: failure not recorded on the access log (%s)", event.request_id, type(err).__name__
        )
