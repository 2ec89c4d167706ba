"""CORS per tier, keyed by path prefix (docs/portal.md §CORS), a pure ASGI middleware.

- Open tier and the public metadata (`/open/…`, `/catalog.*`, `/api/3/action/…`, `/api/action/…`,
  `/explore/datasets/…`): origins from SHUQIAO_CORS_OPEN_ORIGINS (default `*`), methods GET and
  POST. Under `*` only anonymous requests are allowed (headers Content-Type, Accept); an origin
  listed by name may also send `X-API-Key` (an enterprise's own web app).
- Share tier (`/share/…`): origins from SHUQIAO_CORS_SHARE_ORIGINS, by name only (`*` is refused at
  start); default none, and then no CORS header is ever added there. Bearer tokens travel in
  `Authorization`, which a listed origin may send.
- Never `Access-Control-Allow-Credentials`: no cookie or HTTP authentication is ever accepted
  cross-origin, so `*` never meets credentials.
- Everything else (the explorer page's own endpoints, OAuth, admin, audit): no CORS.

A preflight (OPTIONS with Origin and Access-Control-Request-Method) on a covered path is answered
here: 204 with the Access-Control-* headers when origin, method and headers are allowed, else 403
in the one problem shape. Actual requests get Access-Control-Allow-Origin and -Expose-Headers
when their origin is allowed; `Vary: Origin` on every answer of a covered path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.problems import Problem, problem_response

OPEN_PREFIXES = ("/open/", "/catalog.", "/api/3/action/", "/api/action/", "/explore/datasets/")
SHARE_PREFIXES = ("/share/",)
EXPOSE = (
    "RateLimit, RateLimit-Policy, Retry-After, X-Request-ID, Link, Content-Disposition, "
    "Content-Digest, Signature, Signature-Input"
)
MAX_AGE = "600"
# What a browser sends as `Origin`: scheme, host, optional port — no path, no trailing slash.
ORIGIN = re.compile(r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class Policy:
    origins: frozenset[str]
    any_origin: bool
    methods: tuple[str, ...]
    anonymous_headers: frozenset[str]  # what any allowed origin may send
    named_headers: frozenset[str]  # what an origin listed by name may send besides


def checked_origins(setting: str, origins: tuple[str, ...]) -> tuple[str, ...]:
    """The origins as browsers send them (scheme and host in lower case); ValueError naming the
    setting for an entry no browser would ever send (a path, no scheme, a typo), which would
    otherwise never match and fail silently."""
    out = []
    for entry in origins:
        origin = entry.strip().rstrip("/").lower()
        if origin != "*" and not ORIGIN.match(origin):
            raise ValueError(f"{setting}: {entry!r} is not an origin (scheme://host[:port], or `*`)")
        out.append(origin)
    return tuple(out)


def policies(
    open_origins: tuple[str, ...], share_origins: tuple[str, ...]
) -> list[tuple[tuple[str, ...], Policy]]:
    open_origins = checked_origins("SHUQIAO_CORS_OPEN_ORIGINS", open_origins)
    share_origins = checked_origins("SHUQIAO_CORS_SHARE_ORIGINS", share_origins)
    if "*" in share_origins:
        raise ValueError("SHUQIAO_CORS_SHARE_ORIGINS lists origins by name; `*` is refused on the share tier")
    out: list[tuple[tuple[str, ...], Policy]] = [
        (
            OPEN_PREFIXES,
            Policy(
                frozenset(o for o in open_origins if o != "*"),
                "*" in open_origins,
                ("GET", "POST"),
                frozenset({"content-type", "accept"}),
                frozenset({"x-api-key"}),
            ),
        )
    ]
    if share_origins:
        out.append(
            (
                SHARE_PREFIXES,
                Policy(
                    frozenset(share_origins),
                    False,
                    ("POST",),
                    frozenset({"content-type", "accept"}),
                    frozenset({"authorization", "signature", "signature-input", "content-digest"}),
                ),
            )
        )
    return out


_VARY = b"vary"
_ALLOW_ORIGIN = b"access-control-allow-origin"
_EXPOSE = b"access-control-expose-headers"
_EXPOSE_VALUE = EXPOSE.encode("latin-1")


def _allow_headers(origin: str) -> tuple[tuple[bytes, bytes], ...]:
    return ((_ALLOW_ORIGIN, origin.encode("latin-1")), (_EXPOSE, _EXPOSE_VALUE))


def _with_cors(
    headers: Iterable[tuple[bytes, bytes]], added: tuple[tuple[bytes, bytes], ...]
) -> list[tuple[bytes, bytes]]:
    """The response's raw headers with `Vary: Origin` (joined to any Vary already there) and the
    `added` ones, each replacing the headers of its name: the list Starlette's MutableHeaders
    (add_vary_header, then item assignment) makes of them, in one pass and without its
    per-name scans."""
    out: list[tuple[bytes, bytes]] = []
    varies: list[bytes] = []
    vary_at = -1
    slots: dict[bytes, int] = {}  # where a replaced header stood: its replacement goes there
    replaced = {name for name, _ in added}
    for name, value in headers:
        if name == _VARY:
            varies.append(value)
            if vary_at < 0:
                vary_at = len(out)
                out.append((name, value))
        elif name in replaced:
            if name not in slots:
                slots[name] = len(out)
                out.append((name, value))
        else:
            out.append((name, value))
    vary = (_VARY, b", ".join([*varies, b"Origin"]))
    if vary_at < 0:
        out.append(vary)
    else:
        out[vary_at] = vary
    for name, value in added:
        if name in slots:
            out[slots[name]] = (name, value)
        else:
            out.append((name, value))
    return out


class CORSMiddleware:
    def __init__(self, app: ASGIApp, rules: list[tuple[tuple[str, ...], Policy]]) -> None:
        self.app = app
        self.policies = rules  # policies(…): checked when the app is created, not at its first request

    def _policy(self, path: str) -> Policy | None:
        for prefixes, policy in self.policies:
            if path.startswith(prefixes):
                return policy
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self._policy(scope.get("path", ""))
        if policy is None:
            await self.app(scope, receive, send)
            return
        origin: str | None = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
                break  # the first, as Headers.get gives it
        if scope["method"] == "OPTIONS" and origin:
            headers = Headers(scope=scope)
            if "access-control-request-method" in headers:
                await self._preflight(policy, origin, headers)(scope, receive, send)
                return
        added: tuple[tuple[bytes, bytes], ...] = ()
        if origin is not None and origin in policy.origins:
            added = _allow_headers(origin)
        elif origin is not None and policy.any_origin:
            added = _allow_headers("*")

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_cors(message.get("headers", ()), added)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, policy: Policy, origin: str, headers: Headers) -> Response:
        named = origin in policy.origins
        method = headers["access-control-request-method"].upper()
        requested = headers.get("access-control-request-headers", "")
        asked = {h.strip().lower() for h in requested.split(",") if h.strip()}
        may_send = policy.anonymous_headers | (policy.named_headers if named else frozenset())
        refusal = None
        if not (named or policy.any_origin):
            refusal = "This origin may not call this endpoint from a browser."
        elif method not in policy.methods:
            refusal = f"Method {method} is not allowed cross-origin; use {' or '.join(policy.methods)}."
        elif not asked <= may_send:
            refusal = f"Headers not allowed cross-origin here: {', '.join(sorted(asked - may_send))}."
        vary = {"Vary": "Origin"}
        if refusal is not None:
            return problem_response(Problem(403, refusal, "CORS_NOT_ALLOWED"), headers=vary)
        return Response(
            status_code=204,
            headers={
                **vary,
                "Access-Control-Allow-Origin": origin if named else "*",
                "Access-Control-Allow-Methods": ", ".join(policy.methods),
                "Access-Control-Allow-Headers": ", ".join(sorted(may_send)),
                "Access-Control-Max-Age": MAX_AGE,
            },
        )
