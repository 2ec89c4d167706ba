"""One structured line per HTTP request on the `shuqiao.http` logger, and the facts the metrics
and traces are made of.

`RequestLogMiddleware` is a pure ASGI middleware, outside response signing so it sees what the
client got (a withheld 503 included). When the request is done it fills one `RequestFacts` —
request id, method, route template, tier, principal, status, extensions code, duration, bytes —
and hands it to each observer in turn (`log_line` here, `gateway.metrics.observe_request`); the
span namer of `gateway.tracing` sees it as the answer starts, while the span is still open.

What it never holds: a query, variables, a header value, a token, a key or a password. The
principal is what the request's audit event names (a client id, an API-key prefix, a user name,
`anonymous`), noted by the audit sinks through `note_event`, and only when the request proved
it: a failed sign-in or token request names who it *claimed* to be, which is not logged here.
The code comes from the audit event, or for an error answer from its small JSON body (the
problem document's `extensions.code`, or OAuth's `error`)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from gateway.access_log import AccessEvent

log = logging.getLogger("shuqiao.http")

# Path prefix → tier, first match wins. Bounded: every request gets one of these names.
TIERS: tuple[tuple[str, str], ...] = (
    ("/open/", "open"),
    ("/share/", "share"),
    ("/oauth/", "identity"),
    ("/.well-known/", "identity"),
    ("/admin/identity", "identity"),
    ("/static/identity", "identity"),
    ("/admin/", "admin"),
    ("/audit", "audit"),
    ("/explore", "explorer"),
    ("/keys/", "keys"),
    ("/healthz", "ops"),
    ("/readyz", "ops"),
    ("/metrics", "ops"),
)
UNMATCHED = "(unmatched)"  # the route label of a path no route took (a 404): never the raw path
_CODE = re.compile(r"^[A-Za-z0-9_.]{1,48}$")  # a code label is a constant, never free text
_UNPROVEN = frozenset({400, 401, 429})
_ERROR_BODY_MAX = 8192  # error bodies larger than this are not read for their code


def tier_of(path: str) -> str:
    if path == "/":
        return "explorer"
    for prefix, tier in TIERS:
        if path.startswith(prefix):
            return tier
    return "other"


@dataclass(slots=True)
class RequestFacts:
    method: str
    tier: str
    request_id: str | None = None
    route: str = UNMATCHED
    principal_kind: str | None = None  # None: the request named no principal (no audit event)
    principal: str | None = None
    status: int = 0
    code: str | None = None
    duration_ms: float = 0.0
    bytes: int = 0
    trace_id: str | None = None  # set by gateway.tracing when a span is recording

    def as_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and cost more than the rest of the line
        doc = {name: getattr(self, name) for name in _FACTS}
        if doc["trace_id"] is None:
            del doc["trace_id"]
        return doc


_FACTS = tuple(f.name for f in fields(RequestFacts))
Observer = Callable[[RequestFacts], None]
_current: ContextVar[RequestFacts | None] = ContextVar("shuqiao_request_facts", default=None)


def note_event(event: AccessEvent) -> None:
    """Called by the audit sinks for each event they record: the request being logged (if any)
    takes its principal and code from it."""
    facts = _current.get()
    if facts is None:
        return
    if event.error_codes and facts.code is None:
        facts.code = _code(event.error_codes[0])
    # A refused sign-in or token request (bad secret, unknown user, reused code, throttled) names
    # the id it claimed, which is the audit log's to keep, not a principal.
    if event.tier == "identity" and event.status in _UNPROVEN:
        facts.principal_kind = facts.principal_kind or "unauthenticated"
        return
    facts.principal_kind, facts.principal = event.principal_kind, event.principal_id


def _code(value: object) -> str | None:
    return value if isinstance(value, str) and _CODE.match(value) else None


def _code_from_body(body: bytes) -> str | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        ext = errors[0].get("extensions")
        return _code(ext.get("code")) if isinstance(ext, dict) else None
    return _code(doc.get("error"))  # RFC 6749 §5.2


def route_templates(routes: Sequence[Any], prefix: str = "") -> dict[int, str]:
    """id(route) → its path template, mounted routes with their mount's prefix."""
    out: dict[int, str] = {}
    for route in routes:
        path = prefix + getattr(route, "path", "")
        if isinstance(route, Mount):
            inner = getattr(route, "routes", None) or []
            out.update(route_templates(inner, path))
            path += "/{path}"
        out[id(route)] = path
    return out


def log_line(facts: RequestFacts) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("%s", orjson.dumps(facts.as_dict()).decode())


class RequestLogMiddleware:
    def __init__(
        self, app: ASGIApp, observers: Sequence[Observer] = (log_line,), on_response: Sequence[Observer] = ()
    ) -> None:
        """`observers` see each request once it is done; `on_response` as its answer starts (the
        route is known by then, the request still in progress: a tracing span is still open)."""
        self.app = app
        self.observers = tuple(observers)
        self.on_response = tuple(on_response)
        self._templates: dict[int, str] | None = None

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        if self._templates is None:  # the app's routes do not change once it serves
            app = scope.get("app")
            self._templates = route_templates(getattr(app, "routes", []))
        return self._templates.get(id(route), getattr(route, "path", UNMATCHED))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})  # shared with the request id middleware inside
        facts = RequestFacts(method=scope.get("method", ""), tier=tier_of(scope.get("path", "")))
        error_body: bytearray | None = None

        async def observed(message: Message) -> None:
            nonlocal error_body
            if message["type"] == "http.response.start":
                facts.status = message["status"]
                if facts.status >= 400:
                    ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                    error_body = bytearray() if b"json" in ctype else None
                facts.route = self._route(scope)
                self._notify(self.on_response, facts)
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                facts.bytes += len(chunk)
                if error_body is not None:
                    error_body += chunk
                    if len(error_body) > _ERROR_BODY_MAX:
                        error_body = None
            await send(message)

        reset = _current.set(facts)
        try:
            await self.app(scope, receive, observed)
        except BaseException:
            if not facts.status:
                facts.status = 500  # the server error middleware outside answers it
            raise
        finally:
            _current.reset(reset)
            facts.duration_ms = round((time.perf_counter() - started) * 1000, 3)
            facts.request_id = state.get("request_id")
            facts.route = self._route(scope)
            if error_body:
                facts.code = _code_from_body(bytes(error_body)) or facts.code
            self._notify(self.observers, facts)

    @staticmethod
    def _notify(observers: tuple[Observer, ...], facts: RequestFacts) -> None:
        for observe in observers:
            try:
                observe(facts)
            except Exception:  # an observer must never turn an answer into an error
                log.exception("request observer %r failed", observe)
