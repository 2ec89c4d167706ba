"""The enterprise pages in a real browser (Debian's chromium through Playwright), the story end to
end: an enterprise's user follows the dataset page's link to /enterprise/apply?dataset=…, signs in
(the ordinary person sign-in) and lands back there, applies for 有条件开放 tax_credit_rating and
makes an API key (shown once); the key is refused the dataset; tax's steward approves in /console;
the key reads it on /open/graphql; the page shows the grant and the calls; revoked on the page,
the key is refused. Beside it: the page's sign-in redirect and its 403 for a department's person."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.audit.signin import browser_sign_in, sign_in
from tests.support import on_db, serve

TAX = "{ taxCreditRating(first: 3) { totalCount edges { node { creditCode rating } } } }"
PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base


@pytest.fixture(scope="module")
def company(demo_env: Any) -> tuple[str, str]:
    """A new enterprise without grants, and its user (made before the browser's loop runs)."""
    from gateway.identity.clients import ensure_enterprise
    from gateway.identity.users import UserService

    code = f"ent-{secrets.token_hex(3)}"

    async def go(engine: Any) -> None:
        await ensure_enterprise(engine, code, f"浏览器测试企业 {code}", None)
        await UserService(engine).create(f"{code}-dev", PASSWORD, roles=["enterprise_user"], enterprise=code)

    on_db(demo_env, go)
    return code, f"{code}-dev"


def _open(base: str, key: str) -> httpx.Response:
    return httpx.post(f"{base}/open/graphql", json={"query": TAX}, headers={"X-API-Key": key})


def _until(check: Any, seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def _ready(page: Any, table: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(f"#{table}")).to_have_attribute("aria-busy", "false")


def _tab(page: Any, name: str, table: str | None = None) -> None:
    page.click(f"#tabs button[data-tab={name}]")
    _ready(page, table or name)


def test_the_page_sends_to_sign_in_and_refuses_a_department_person(
    served: str, demo_env: Any, company: tuple[str, str]
) -> None:
    r = httpx.get(f"{served}/enterprise/apply?dataset=tax_credit_rating")
    assert r.status_code == 303
    assert r.headers["location"] == "/web/login?next=/enterprise/apply%3Fdataset%3Dtax_credit_rating"
    creds = demo_env.credentials["users"]["hrss-developer"]
    client, page = sign_in(served, "hrss-developer", creds["password"], start="/enterprise")
    try:
        assert page.status_code == 403 and page.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert client.get("/enterprise/static/enterprise.js").status_code == 200
        assert client.get("/enterprise/static/nope.js").status_code == 404
    finally:
        client.close()
    client, page = sign_in(served, company[1], PASSWORD, start="/enterprise")
    try:
        assert page.status_code == 200 and page.url.path == "/enterprise"
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "<script>" not in page.text
        assert '<html lang="zh-CN">' in page.text
    finally:
        client.close()


def test_apply_key_approve_read_revoke(
    served: str, demo_env: Any, company: tuple[str, str], browser: Any
) -> None:
    from playwright.sync_api import expect

    code, user = company
    context = browser.new_context()
    page = context.new_page()
    try:
        # from the dataset page's link: sign in first, then back to the application form
        page.goto(f"{served}/enterprise/apply?dataset=tax_credit_rating")
        assert "/oauth/authorize" in page.url and page.locator("#password").count() == 1
        browser_sign_in(page, served, user, PASSWORD, start="/enterprise/apply?dataset=tax_credit_rating")
        page.wait_for_url(f"{served}/enterprise/apply?dataset=tax_credit_rating")
        expect(page.locator("#who-enterprise")).to_contain_text(code)
        _ready(page, "apps")
        expect(page.locator("#apply-form select[name=dataset]")).to_have_value("tax_credit_rating")
        expect(page.locator("#apply-fields .field[data-name=rating] input")).to_be_checked()
        page.fill("#apply-form input[name=purpose]", "小微企业信用贷款授信审查")
        page.fill("#apply-form input[name=legalBasis]", "授权运营协议")
        page.click("#apply-send")
        expect(page.locator("#status")).to_contain_text("submitted")
        app_id = page.locator("#status").inner_text().split("#")[1].split()[0]
        row = page.locator(f"#apps tbody tr[data-id='{app_id}']")
        expect(row.locator("td.state")).to_have_text("submitted")

        # a key, shown once
        _tab(page, "keys")
        page.fill("#key-form input[name=name]", "浏览器")
        page.click("#key-create")
        expect(page.locator("#new-key")).to_be_visible()
        key = page.locator("#new-key-value").inner_text().strip()
        assert key.startswith("sq_")
        prefix = key.split("_")[1]
        expect(page.locator(f"#keys tbody tr[data-prefix='{prefix}'] td.state")).to_have_text("active")
        page.click("#new-key-done")
        expect(page.locator("#new-key")).to_be_hidden()
        assert key not in page.content()  # gone from the page once stored

        before = _open(served, key).json()
        assert [e["extensions"]["code"] for e in before["errors"]] == ["FORBIDDEN"]
        with page.expect_navigation():
            page.click("#signout button")
    finally:
        context.close()

    # tax's steward approves it in the console
    steward = demo_env.credentials["users"]["tax-steward"]["password"]
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{served}/console")
        browser_sign_in(page, served, "tax-steward", steward, start="/console")
        page.wait_for_url(f"{served}/console*")
        _ready(page, "apps")
        _tab(page, "pending")
        pending = page.locator(f"#pending tbody tr[data-id='{app_id}']")
        expect(pending).to_contain_text(code)
        pending.locator("button.approve").click()
        expect(page.locator("#status")).to_contain_text(f"#{app_id} ✓")
    finally:
        context.close()

    # the key reads the conditional dataset on the open tier
    body = _until(lambda: (b := _open(served, key).json()) and not b.get("errors") and b)
    assert body and body["data"]["taxCreditRating"]["totalCount"] > 0, _open(served, key).text

    # back on the page: the grant, the calls, then revoke the key
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{served}/enterprise")
        browser_sign_in(page, served, user, PASSWORD, start="/enterprise")
        page.wait_for_url(f"{served}/enterprise*")
        _ready(page, "keys")
        _tab(page, "grants")
        grant = page.locator("#grants tbody tr[data-dataset=tax_credit_rating]")
        expect(grant.locator("td.state")).to_have_text("active")
        _tab(page, "usage")
        calls = page.locator(f"#quota tbody tr[data-prefix='{prefix}'] td.calls-today")
        assert int(calls.inner_text()) >= 2
        _tab(page, "apps")
        expect(page.locator(f"#apps tbody tr[data-id='{app_id}'] td.state")).to_have_text("approved")

        _tab(page, "keys")
        revoke = page.locator(f"#keys tbody tr[data-prefix='{prefix}'] button.revoke")
        revoke.click()
        expect(revoke).to_have_text("确认撤销 Confirm revoke")
        revoke.click()
        expect(page.locator(f"#keys tbody tr[data-prefix='{prefix}'] td.state")).to_have_text("revoked")
    finally:
        context.close()
    assert _until(lambda: _open(served, key).status_code == 401), _open(served, key).text
