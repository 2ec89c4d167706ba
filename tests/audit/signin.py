"""Signing a person in to the gateway's pages over real HTTP (gateway.web.session), as a browser
would: follow the redirects and fill the sign-in form. The gateway's own pages are first-party
clients: no consent page is shown, and these helpers fail if one is."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx

from tests.support import on_db

_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')


def _hidden(html: str) -> dict[str, str]:
    import html as h

    return {k: h.unescape(v) for k, v in _HIDDEN.findall(html)}


def sign_in(
    base: str, username: str, password: str, start: str = "/audit"
) -> tuple[httpx.Client, httpx.Response]:
    """A client holding the session cookie, and the answer to `start` after signing in."""
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=30)
    r = client.get(start)
    assert r.url.path == "/oauth/authorize" and 'action="/oauth/login"' in r.text, (r.url, r.text[:500])
    form = _hidden(r.text)
    r = client.post("/oauth/login", data={**form, "username": username, "password": password})
    assert not (r.url.path == "/oauth/authorize" and "decision" in r.text), "a consent page for our own page"
    return client, r


def make_user(demo_env: Any, roles: list[str], department: str | None = None) -> tuple[str, str]:
    """A new person with these roles; (username, password)."""
    from gateway.identity.users import UserService

    username = f"u-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(15)

    async def go(engine: Any) -> None:
        await UserService(engine).create(username, password, roles=roles, department=department)

    on_db(demo_env, go)
    return username, password


def make_user_threaded(demo_env: Any, roles: list[str], department: str | None = None) -> tuple[str, str]:
    """`make_user` from a thread of its own: the sync Playwright API keeps a loop running in this one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(make_user, demo_env, roles, department).result()


def browser_sign_in(page: Any, base: str, username: str, password: str, start: str = "/audit") -> Any:
    """Sign in on the sign-in page as a person would; the answer to the last navigation."""
    page.goto(f"{base}{start}")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation() as nav:
        page.click("button[type=submit]")
    assert not page.locator("button[value=approve]").count(), "a consent page for our own page"
    return nav.value
