"""The one error shape of our HTTP answers: a `Problem` raised anywhere on a request path becomes
`{"errors": [{"message": ..., "extensions": {"code": ...}}]}` with its status and headers — the
GraphQL response shape, so the tiers, the officer API, the admin API and the failure middleware
answer alike (tests/gateway/test_error_shape.py). Three protocols keep their own, as their
specifications and clients require: RFC 6749 errors on /oauth/* (gateway.identity.oauth.oauth_error),
the health report of /readyz, and CKAN's envelope on /api/3/action/* (gateway.portal.ckan)."""

from __future__ import annotations

from html import escape

import orjson
from starlette.responses import HTMLResponse, Response

JSON = "application/json"
INTERNAL_ERROR = "INTERNAL_SERVER_ERROR"


class Problem(Exception):
    """A refusal or failure with a message that is safe to show and a stable `extensions.code`."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        headers: dict[str, str] | None = None,
        extensions: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        # more for a program to act on, beside the code (e.g. every error of a catalogue file)
        self.extensions = extensions or {}


def problem_body(problem: Problem) -> dict[str, list[dict[str, object]]]:
    extensions = {"code": problem.code, **getattr(problem, "extensions", {})}
    return {"errors": [{"message": problem.message, "extensions": extensions}]}


def problem_response(problem: Problem, media: str = JSON, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(problem_body(problem)),
        status_code=problem.status,
        media_type=media,
        headers={**problem.headers, **(headers or {})},
    )


_PAGE_TITLES = {503: "服务暂时不可用，请稍后重试", 500: "服务内部错误"}


def problem_page(problem: Problem, request_id: str) -> Response:
    """The same problem for a browser that asked for a page: Chinese first, the English message,
    the code and the request id to quote to the operators; no script, nothing fetched."""
    title = _PAGE_TITLES.get(problem.status, "请求未能完成")
    body = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · 数桥</title></head><body>"
        f'<main><h1>{escape(title)}</h1><p role="alert" id="page-error">{escape(problem.message)}</p>'
        f"<p>错误代码 Code: <code>{escape(problem.code)}</code> · "
        f"请求编号 Request ID: <code>{escape(request_id)}</code></p></main></body></html>"
    )
    return HTMLResponse(
        body, status_code=problem.status, headers={**problem.headers, "Cache-Control": "no-store"}
    )


# Every pooled database connection stayed busy for the pool timeout (gateway.db.create_engine).
BUSY = Problem(503, "The gateway is busy; retry shortly.", "SERVICE_BUSY", {"Retry-After": "1"})

AUDIT_UNAVAILABLE = Problem(
    503,
    "The access log is unavailable; no data is served without it.",
    "AUDIT_UNAVAILABLE",
    {"Retry-After": "5"},
)

DATABASE_UNAVAILABLE = Problem(
    503, "The database is unavailable; retry shortly.", "DATABASE_UNAVAILABLE", {"Retry-After": "5"}
)

# Redis holds the shared rate-limit counters: without them no limit can be enforced, so requests
# that need one are refused (fail closed) until it is back.
RATE_LIMIT_UNAVAILABLE = Problem(
    503,
    "The rate-limit store is unavailable; no request is served without its limit. Retry shortly.",
    "RATE_LIMIT_UNAVAILABLE",
    {"Retry-After": "5"},
)

REDIS_UNAVAILABLE = Problem(
    503, "A shared store is unavailable; retry shortly.", "REDIS_UNAVAILABLE", {"Retry-After": "5"}
)

# Anything unexpected: the client learns nothing of it but the request id to quote.
INTERNAL = Problem(
    500, "An internal error occurred; it has been logged under this request's X-Request-ID.", INTERNAL_ERROR
)
