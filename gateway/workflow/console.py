"""The sharing workflow's web console (工作台), `GET /console`: my applications, pending approvals,
grants, demands and quality reports, with a link to the KPI page.

A shell page and its script (gateway/static/console, vanilla JS, no CDN); every view's data is a
query of `POST /admin/graphql` (the machine twin), sent with the person's session cookie and
CSRF token (gateway.web.session). What a person may see and do is decided there, by
policies.workflow, never by the page: the buttons it shows follow each application's
`nextSteps`. Without a session the page sends the browser to sign in; a person whose token has
none of the admin GraphQL scopes (e.g. a security officer) gets 403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.problems import Problem, problem_response

STATIC = Path(__file__).resolve().parent.parent / "static" / "console"
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
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
    """Given by the app factory the check the admin GraphQL endpoint uses (SessionOrBearer)."""

    def __init__(self, check: Callable[[Request], Awaitable[Any]]) -> None:
        self.check = check

    def routes(self) -> list[Route]:
        """Under `Mount(MOUNT)`; the page itself is `GET /console` (`self.page`)."""
        return [Route("/static/{name}", self.asset)]

    async def page(self, request: Request) -> Response:
        try:
            await self.check(request)
        except Problem as problem:
            if problem.status == 401:  # no session, or one that ended: sign in, then come back
                return RedirectResponse(f"/web/login?next={MOUNT}", status_code=303)
            return problem_response(problem)
        response = FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")
        response.headers.update(PAGE_HEADERS)
        return response

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return problem_response(Problem(404, "No such asset.", "NOT_FOUND"))
        return FileResponse(STATIC / name, media_type=ASSETS[name])
