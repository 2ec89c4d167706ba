"""The workbench's pages and files.

Routes (mounted by gateway.app):
  GET /graphiql                      open tier: anonymous, or an enterprise's API key typed into the page
  GET /graphiql/share                share tier: the browser signs the person in (code + PKCE) as the
                                     public client `shuqiao-graphiql`, redirect URI {issuer}/graphiql/share
  GET /graphiql/examples.json        an example per dataset of the anonymous open schema
  GET /graphiql/share/examples.json  the same for the caller's share schema (Bearer, share:read)
  GET /graphiql/errors, .json        the error codes (gateway.workbench.errors), page and twin
  GET /graphiql/vendor/{path}        GraphiQL bundled (gateway/static/graphiql, `make graphiql-assets`)
  GET /graphiql/assets/{name}        the page's own script and style (gateway/static/workbench)

Both pages are one HTML file with its configuration in a `data-config` attribute (no inline
script). GraphiQL's editor (Monaco) injects `<style>` elements and style attributes at run time
and its stylesheet embeds fonts as `data:` URIs, so the CSP allows `style-src 'unsafe-inline'`
and `font-src data:` — never `unsafe-eval`, and scripts only from this origin. The token never
reaches the server's HTML: the page keeps it in sessionStorage of its tab.
"""

from __future__ import annotations

import html
import weakref
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateway.explorer import API_KEY_HEADER
from gateway.identity.bearer import BearerRefused
from gateway.problems import Problem, problem_response
from gateway.registry import BuiltSchema
from gateway.state import GatewayState
from gateway.workbench.assets import VendorAssets
from gateway.workbench.client import CLIENT_ID, SCOPES, ensure_workbench_client, redirect_uri
from gateway.workbench.errors import CODES, KIND_LABELS, KINDS, errors_document
from gateway.workbench.examples import examples_document
from policies.model import Tier

STATIC = Path(__file__).resolve().parent.parent / "static"
VENDOR = STATIC / "graphiql"
OWN = STATIC / "workbench"
OWN_ASSETS = {"workbench.js": "text/javascript; charset=utf-8", "workbench.css": "text/css; charset=utf-8"}
ENDPOINTS = {Tier.OPEN: "/open/graphql", Tier.SHARE: "/share/graphql"}

_COMMON = (
    "default-src 'none'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# GraphiQL (Monaco) needs inline styles and data: fonts; scripts and workers from here only.
WORKBENCH_CSP = (
    f"{_COMMON}; script-src 'self'; worker-src 'self'; "
    "style-src 'self' 'unsafe-inline'; font-src 'self' data:"
)
ERRORS_CSP = f"{_COMMON}; style-src 'self'"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · 数桥 Shuqiao</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/graphiql/vendor/graphiql.css">
<link rel="stylesheet" href="/graphiql/assets/workbench.css">
</head>
<body data-config="{config}">
<header class="wb-bar">
  <h1>查询工作台 <span lang="en">Query workbench</span> · {tier_label}</h1>
  <nav aria-label="工作台">
    <a href="/graphiql"{open_current}>开放接口 <span lang="en">Open</span></a>
    <a href="/graphiql/share"{share_current}>共享接口（需登录） <span lang="en">Share</span></a>
    <a href="/graphiql/errors">错误代码 <span lang="en">Error codes</span></a>
    <a href="/explore">开放目录 <span lang="en">Catalogue</span></a>
  </nav>
  <div class="wb-identity" id="identity"></div>
  <p class="wb-status" id="status" role="status" aria-live="polite"></p>
</header>
<main id="graphiql" class="wb-graphiql"><p class="wb-loading">正在加载查询工作台… Loading…</p></main>
<noscript><p class="wb-loading">查询工作台需要 JavaScript。The workbench needs JavaScript;
the API itself does not: <code>curl -d '{{"query":"{{ __typename }}"}}'
-H 'Content-Type: application/json' {endpoint}</code></p></noscript>
<script src="/graphiql/vendor/graphiql.js"></script>
<script src="/graphiql/assets/workbench.js"></script>
</body>
</html>
"""

ERRORS_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>错误代码 Error codes · 数桥 Shuqiao</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/graphiql/assets/workbench.css">
</head>
<body class="wb-doc">
<header class="wb-bar">
  <h1>错误代码 <span lang="en">Error codes</span></h1>
  <nav aria-label="工作台">
    <a href="/graphiql">开放接口查询 <span lang="en">Open</span></a>
    <a href="/graphiql/share">共享接口查询 <span lang="en">Share</span></a>
    <a href="/graphiql/errors.json">JSON</a>
  </nav>
</header>
<main>
<p>每个错误都是 <code>{{"errors": [{{"message": …, "extensions": {{"code": …}}}}]}}</code>：按
<code>extensions.code</code> 判断，不要按 message 文本。</p>
<ul>{kinds}</ul>
<div class="wb-scroll">
<table>
<caption>GraphQL 接口（/open/graphql、/share/graphql）的 extensions.code</caption>
<thead><tr><th scope="col">代码 Code</th><th scope="col">HTTP</th><th scope="col">类别 Kind</th>
<th scope="col">含义与处理</th><th scope="col" lang="en">Meaning</th>
<th scope="col">接口 Tier</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</div>
</main>
</body>
</html>
"""


class Workbench:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.issuer = state.identity.issuer.rstrip("/")
        self.vendor = VendorAssets(VENDOR)
        self._client_ready = False
        # one rendering per built schema (a catalogue change builds a new one, so a new entry)
        self._examples: weakref.WeakKeyDictionary[BuiltSchema, bytes] = weakref.WeakKeyDictionary()

    def routes(self) -> list[Route]:
        """Under `Mount("/graphiql")`; the open page itself is `GET /graphiql` (`self.open_page`)."""
        return [
            Route("/share", self.share_page),
            Route("/examples.json", self.open_examples),
            Route("/share/examples.json", self.share_examples),
            Route("/errors", self.errors_page),
            Route("/errors.json", self.errors_json),
            Route("/vendor/{path:path}", self.vendor.handle),
            Route("/assets/{name}", self.own_file),
        ]

    # ------------------------------------------------------------ pages
    def _page(self, tier: Tier, config: dict[str, Any]) -> Response:
        labels = {Tier.OPEN: "开放接口 Open tier", Tier.SHARE: "共享接口 Share tier"}
        body = PAGE.format(
            title=f"查询工作台 · {labels[tier]}",
            tier_label=labels[tier],
            config=html.escape(orjson.dumps(config).decode(), quote=True),
            open_current=' aria-current="page"' if tier is Tier.OPEN else "",
            share_current=' aria-current="page"' if tier is Tier.SHARE else "",
            endpoint=html.escape(self.issuer + ENDPOINTS[tier]),
        )
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": WORKBENCH_CSP, "Cache-Control": "no-cache"}
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    async def open_page(self, request: Request) -> Response:
        return self._page(
            Tier.OPEN,
            {
                "tier": "open",
                "endpoint": ENDPOINTS[Tier.OPEN],
                "examples": "/graphiql/examples.json",
                "errors": "/graphiql/errors.json",
                "apiKeyHeader": API_KEY_HEADER,
            },
        )

    async def share_page(self, request: Request) -> Response:
        if not self._client_ready:  # registered here too: a store made before this client existed
            await ensure_workbench_client(self.state.engine, self.issuer)
            self._client_ready = True
        return self._page(
            Tier.SHARE,
            {
                "tier": "share",
                "endpoint": ENDPOINTS[Tier.SHARE],
                "examples": "/graphiql/share/examples.json",
                "errors": "/graphiql/errors.json",
                "oauth": {
                    "authorize": "/oauth/authorize",
                    "token": "/oauth/token",
                    "revoke": "/oauth/revoke",
                    "clientId": CLIENT_ID,
                    "redirectUri": redirect_uri(self.issuer),
                    "scope": " ".join(SCOPES),
                },
            },
        )

    # ------------------------------------------------------------ examples
    def _examples_of(self, built: BuiltSchema, tier: Tier) -> bytes:
        body = self._examples.get(built)
        if body is None:
            body = orjson.dumps(examples_document(built, ENDPOINTS[tier]))
            self._examples[built] = body
        return body

    async def open_examples(self, request: Request) -> Response:
        built = await self.state.registry.schema(Tier.OPEN)
        return _json(self._examples_of(built, Tier.OPEN))

    async def share_examples(self, request: Request) -> Response:
        try:  # the one bearer check, the share tier's own (share:read and a department)
            claims = await self.state.identity.share_bearer.validate_request(request)
        except BearerRefused as refused:
            return problem_response(Problem(refused.status, refused.message, refused.code, refused.headers))
        built = await self.state.registry.schema(Tier.SHARE, claims.department)
        return _json(self._examples_of(built, Tier.SHARE), private=True)

    # ------------------------------------------------------------ errors
    async def errors_page(self, request: Request) -> Response:
        kinds = "".join(
            f"<li><strong>{html.escape(KIND_LABELS[k])}</strong>：{html.escape(text)}</li>"
            for k, text in KINDS.items()
        )
        rows = "\n".join(
            "<tr>"
            f'<th scope="row" id="{c.code}"><code>{c.code}</code></th><td>{c.status}</td>'
            f"<td>{html.escape(KIND_LABELS[c.kind])}</td><td>{html.escape(c.zh)}</td>"
            f'<td lang="en">{html.escape(c.en)}</td><td>{" ".join(c.tiers)}</td>'
            "</tr>"
            for c in CODES
        )
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": ERRORS_CSP}
        return Response(
            ERRORS_PAGE.format(kinds=kinds, rows=rows), media_type="text/html; charset=utf-8", headers=headers
        )

    async def errors_json(self, request: Request) -> Response:
        return _json(errors_document())

    # ------------------------------------------------------------ files
    async def own_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in OWN_ASSETS:
            return problem_response(Problem(404, "No such file.", "NOT_FOUND"))
        return FileResponse(OWN / name, media_type=OWN_ASSETS[name], headers=SECURITY_HEADERS)


def _json(doc: dict[str, Any] | bytes, *, private: bool = False) -> Response:
    cache = "private, no-store" if private else "no-cache"
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return Response(body, media_type="application/json", headers={"Cache-Control": cache})
