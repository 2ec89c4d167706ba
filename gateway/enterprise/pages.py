"""The enterprise pages (企业服务): `GET /enterprise` (API keys, grants, quota and usage,
applications) and `GET /enterprise/apply?dataset=<code>` (the same page, opened on the
application form for that dataset: the portal's dataset pages link here). A shell page and its
script (gateway/static/enterprise, vanilla JS, no CDN, no inline script), served the way the
console is (gateway.workflow.console.Console: sign-in redirect, CSP, one audit event per view);
its data are queries of `POST /admin/graphql` with the session cookie and CSRF token.

Only a person with the `enterprise` scope (role `enterprise_user`) gets the page; others signed
in get 403 in the one Problem shape. What they may see and do is decided by the API
(gateway.enterprise.service, policies.workflow), never by the page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request

from gateway.access_log import AccessLog
from gateway.workflow.console import PAGE_SCRIPT, Console

STATIC = Path(__file__).resolve().parent.parent / "static" / "enterprise"
ASSETS = {  # name: (file, media type)
    PAGE_SCRIPT[0]: PAGE_SCRIPT[1],
    "enterprise.js": (STATIC / "enterprise.js", "text/javascript; charset=utf-8"),
    "enterprise.css": (STATIC / "enterprise.css", "text/css; charset=utf-8"),
}
MOUNT = "/enterprise"
SCOPES = ["enterprise"]  # the page's check; the API checks ownership on every call


def enterprise_pages(check: Callable[[Request], Awaitable[Any]], access_log: AccessLog) -> Console:
    """`page` answers `GET /enterprise` and `GET /enterprise/apply`; `routes()` its assets under
    `Mount(MOUNT)`."""
    return Console(check, access_log, static=STATIC, assets=ASSETS, mount=MOUNT)
