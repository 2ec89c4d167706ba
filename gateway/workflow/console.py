"""The sharing workflow's web console (工作台), `GET /console`: my applications, pending approvals,
grants, demands and quality reports, with a link to the KPI page; for data stewards, "目录与数据"
(catalogue as code and data loading), a client of /admin/catalogue/* and /admin/data/* (the same
endpoints `shuqiao catalog apply|export` and `shuqiao data load` mirror), which check the
department server-side.

A shell page and its script (gateway/static/console, vanilla JS, no CDN); every view's data is a
query of `POST /admin/graphql` (the machine twin), sent with the person's session cookie and
CSRF token (gateway.web.session). What a person may see and do is decided there, by
policies.workflow, never by the page: the buttons it shows follow each application's
`nextSteps`. Without a session the page sends the browser to sign in; a person whose token has
none of the admin GraphQL scopes (e.g. a security officer) gets 403. Each page view is an audit
event (tier "admin", operation "page"), as on /audit; the data calls are the API's own events."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.access_log import AccessEvent, AccessLog, answer_once_recorded
from gateway.client_address import client_address
from gateway.problems import Problem, problem_response

STATIC = Path(__file__).resolve().parent.parent / "static" / "console"
ROOT = Path(__file__).resolve().parents[2]
# what every shell page over /admin/graphql shares: the session, the GraphQL call, DOM helpers
PAGE_SCRIPT = ("page.js", (STATIC.parent / "web" / "page.js", "text/javascript; charset=utf-8"))
ASSETS = {  # name: (file, media type)
    PAGE_SCRIPT[0]: PAGE_SCRIPT[1],
    "console.js": (STATIC / "console.js", "text/javascript; charset=utf-8"),
    "console.css": (STATIC / "console.css", "text/css; charset=utf-8"),
    # the catalogue file's JSON Schema, for the steward section's link (docs/catalogue.md)
    "catalogue.schema.json": (ROOT / "catalogue" / "catalogue.schema.json", "application/schema+json"),
}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # the sign-out form must send this Origin (CSRF check)
    "X-Content-Type-Options": "nosniff",
}
MOUNT = "/console"


class Console:
    """Given by the app factory the check the admin GraphQL endpoint uses (SessionOrBearer) and
    the access log (each page view's event). Other shell pages over the same API (the
    enterprise pages, gateway.enterprise) are this class with their own `static` folder,
    `assets` and `mount`."""

    def __init__(
        self,
        check: Callable[[Request], Awaitable[Any]],
        access_log: AccessLog,
        *,
        static: Path = STATIC,
        assets: dict[str, tuple[Path, str]] | None = None,
        mount: str = MOUNT,
    ) -> None:
        self.check = check
        self.access_log = access_log
        self.static = static
        self.assets = ASSETS if assets is None else assets
        self.mount = mount

    def routes(self) -> list[Route]:
        """Under `Mount(self.mount)`; the page itself is `GET /console` (`self.page`)."""
        return [Route("/static/{name}", self.asset)]

    async def page(self, request: Request) -> Response:
        started = time.perf_counter()
        claims: Any = None
        response: Response
        try:
            claims = await self.check(request)
            response = FileResponse(self.static / "index.html", media_type="text/html; charset=utf-8")
            response.headers.update(PAGE_HEADERS)
        except Problem as problem:
            claims = getattr(problem, "claims", None)  # signed in, without a workflow scope
            response = problem_response(problem)
            if problem.status == 401:  # no session, or one that ended: sign in, then come back here
                back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"/web/login?next={quote(back, safe='/')}", status_code=303)
        person = claims is not None and claims.subject != claims.client_id
        event = AccessEvent(
            request_id=getattr(request.state, "request_id", ""),
            tier="admin",
            principal_kind=("person" if person else "department") if claims else "anonymous",
            principal_id=claims.client_id if claims else "anonymous",
            consumer=claims.department if claims else None,
            client_address=client_address(request),
            operation_name="page",
            operation_type="query",
            query_digest=None,
            status=response.status_code,
            error_codes=[] if response.status_code < 400 else [str(response.status_code)],
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            reads=[],
            subject=claims.subject if person else None,
        )
        return await answer_once_recorded(self.access_log, event, response)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.assets:
            return problem_response(Problem(404, "No such asset.", "NOT_FOUND"))
        path, media = self.assets[name]
        return FileResponse(path, media_type=media)
