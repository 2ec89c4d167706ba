"""The query workbench in a real browser (Debian's chromium through Playwright): the open tier
anonymously and with an enterprise's API key, a `?query=` link prefilled, and the share tier
after signing in as hrss's developer on the page itself (code + PKCE from the browser) — every
page without a console error or a CSP violation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.support import serve

pytestmark = pytest.mark.browser

# Registered before any page script runs (not subject to the page's CSP): every violation is kept.
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base


class Watched:
    """A fresh context and page that records console errors, page errors and requests."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.context.add_init_script(WATCH_CSP)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[Any] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r))

    def clean(self) -> None:
        """No console error, no CSP violation on the page as it stands."""
        assert self.errors == [], self.errors
        assert self.page.evaluate("window.__csp") == []

    def close(self) -> None:
        self.context.close()


def _run(page: Any) -> None:
    page.click(".graphiql-execute-button")


def _response(page: Any) -> Any:
    return page.locator(".graphiql-response")


def test_open_tier_examples_and_a_query(served: str, browser: Any) -> None:
    from playwright.sync_api import expect

    w = Watched(browser)
    page = w.page
    page.goto(f"{served}/graphiql")
    example = page.locator("button[data-example=airQualityDaily]")
    expect(example).to_be_visible(timeout=20_000)  # the examples panel, from the open schema
    expect(page.locator("button[data-example=taxCreditRating]")).to_contain_text("API Key")
    example.click()
    expect(page.locator(".graphiql-query-editor")).to_contain_text("airQualityDaily(first: 5)")
    _run(page)
    expect(_response(page)).to_contain_text('"totalCount"', timeout=20_000)
    expect(_response(page)).to_contain_text('"aqi"')
    posted = [r for r in w.requests if r.url.endswith("/open/graphql") and r.method == "POST"]
    assert posted and all("x-api-key" not in r.headers and "authorization" not in r.headers for r in posted)
    # the error codes panel
    page.click("button[aria-label='显示 错误代码 Error codes']")
    expect(page.locator(".wb-errors")).to_contain_text("FORBIDDEN_FIELD")
    # GraphiQL's own labels are Chinese first too (web/graphiql/src/labels.mjs)
    expect(page.locator("button[data-name=variables]")).to_have_text("变量 Variables")
    expect(page.locator(".graphiql-execute-button")).to_have_attribute(
        "aria-label", "执行查询 Execute query (Ctrl-Enter)"
    )
    expect(page.locator("button[aria-label='显示 历史 History']")).to_be_visible()
    # Ctrl-Alt-K finds the doc explorer's sidebar button by its (translated) label and opens it
    page.locator(".graphiql-query-editor").click()
    page.keyboard.press("Control+Alt+KeyK")
    expect(page.locator("section[aria-label='文档 Documentation explorer']")).to_be_visible()
    expect(page.locator(".graphiql-doc-explorer")).to_contain_text("根类型 Root types")
    w.clean()
    w.close()


def test_open_tier_with_an_api_key(served: str, browser: Any, demo_env: Any) -> None:
    from playwright.sync_api import expect

    key = demo_env.credentials["api_keys"]["demo-bank"]
    w = Watched(browser)
    page = w.page
    query = "{ taxCreditRating(first: 1) { totalCount edges { node { taxpayerName rating } } } }"
    page.goto(f"{served}/graphiql?query={quote(query)}")
    expect(page.locator(".graphiql-query-editor")).to_contain_text(
        "taxCreditRating(first: 1)", timeout=20_000
    )
    _run(page)  # anonymous: a 有条件开放 dataset is refused
    expect(_response(page)).to_contain_text('"FORBIDDEN"', timeout=20_000)
    page.fill("#api-key", key)
    _run(page)
    expect(_response(page)).to_contain_text('"taxpayerName"', timeout=20_000)
    keyed = [r for r in w.requests if r.url.endswith("/open/graphql") and r.headers.get("x-api-key") == key]
    assert keyed, "the key was not sent as X-API-Key"
    assert all(key not in r.url for r in w.requests)
    w.clean()
    w.close()


def test_a_query_link_is_prefilled(served: str, browser: Any) -> None:
    from playwright.sync_api import expect

    w = Watched(browser)
    page = w.page
    query = "query Registered($n: Int) { enterpriseRegistration(first: $n) { totalCount } }"
    variables = '{"n": 1}'
    page.goto(f"{served}/graphiql?query={quote(query)}&variables={quote(variables)}")
    expect(page.locator(".graphiql-query-editor")).to_contain_text(
        "enterpriseRegistration(first: $n)", timeout=20_000
    )
    expect(page.locator(".graphiql-editor-tool")).to_contain_text('"n": 1')
    _run(page)
    expect(_response(page)).to_contain_text('"totalCount"', timeout=20_000)
    w.clean()
    w.close()


def test_share_tier_signs_in_on_the_page_and_queries_with_the_persons_token(
    served: str, browser: Any, demo_env: Any
) -> None:
    from playwright.sync_api import expect

    password = demo_env.credentials["users"]["hrss-developer"]["password"]
    w = Watched(browser)
    page = w.page
    query = "{ population(first: 2) { totalCount edges { node { name } } } }"
    page.goto(f"{served}/graphiql/share?query={quote(query)}")
    expect(page.locator("#sign-in-main")).to_be_visible(timeout=20_000)
    w.clean()
    page.click("#sign-in-main")
    page.wait_for_url("**/oauth/authorize?**")
    assert "client_id=shuqiao-graphiql" in page.url and "code_challenge_method=S256" in page.url
    page.fill("#username", "hrss-developer")
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert not page.locator("button[value=approve]").count()  # a first-party client: no consent page
    page.wait_for_url(f"{served}/graphiql/share?query=*")
    expect(page.locator("#sign-out")).to_be_visible(timeout=20_000)
    assert "code=" not in page.url and "state=" not in page.url  # back to the query link, no code
    expect(page.locator("#who")).to_contain_text("hrss")
    expect(page.locator("button[data-example=population]")).to_be_visible()  # hrss's own schema
    expect(page.locator(".graphiql-query-editor")).to_contain_text("population(first: 2)")
    _run(page)
    expect(_response(page)).to_contain_text('"totalCount"', timeout=20_000)
    shared = [r for r in w.requests if r.url.endswith("/share/graphql") and r.method == "POST"]
    assert shared and all(r.headers.get("authorization", "").startswith("Bearer ") for r in shared)
    token = shared[-1].headers["authorization"].removeprefix("Bearer ")
    assert all(token not in r.url for r in w.requests)  # never in a URL
    assert page.evaluate("document.cookie").find(token) < 0
    assert token in page.evaluate("sessionStorage.getItem('shuqiao.graphiql.share.token')")
    assert page.evaluate("Object.values(localStorage).join(' ')").find(token) < 0
    w.clean()
    # signing out revokes the token: the share tier refuses it from then on
    with page.expect_navigation():
        page.click("#sign-out")
    expect(page.locator("#sign-in-main")).to_be_visible(timeout=20_000)
    import httpx

    refused = httpx.post(
        f"{served}/share/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401
    w.clean()
    w.close()
