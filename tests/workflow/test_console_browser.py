"""The sharing console (工作台) in a real browser (Debian's chromium through Playwright), the story
end to end: hrss is refused population.phone on the share tier; its developer signs in to
/console, applies for phone (masked) and signs out; a steward of samr neither sees the
application nor may approve it (no button; the API answers FORBIDDEN); police's steward approves
it and the share tier returns the phone masked; revoked in the console, it is refused again."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.audit.signin import browser_sign_in, make_user_threaded
from tests.support import serve

PHONE = "{ population(first: 5) { edges { node { name phone } } } }"
MASKED = re.compile(r"1\d{2}\*{4}\d{4}")
POLLS = 20  # the share tier follows a grant change within a second: 20 looks, 50 ms apart
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base


def _phones(base: str, token: str) -> tuple[list[str], list[str]]:
    """The phone numbers hrss's system reads on the share tier, and the error codes."""
    r = httpx.post(
        f"{base}/share/graphql", json={"query": PHONE}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    phones = [e["node"]["phone"] for e in (body.get("data") or {}).get("population", {}).get("edges", [])]
    return [p for p in phones if p], [e["extensions"]["code"] for e in body.get("errors", [])]


def _until(check: Any) -> Any:
    for _ in range(POLLS):
        if result := check():
            return result
        time.sleep(0.05)
    return check()


def _signed_in(browser: Any, base: str, username: str, password: str) -> tuple[Any, Any]:
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/console")
    assert "/oauth/authorize" in page.url and page.locator("#password").count() == 1  # no session: sign in
    browser_sign_in(page, base, username, password, start="/console")
    page.wait_for_url(f"{base}/console*")
    expect(page.locator("#apps")).to_have_attribute("aria-busy", "false")
    return context, page


def _tab(page: Any, name: str) -> None:
    """Open a tab and wait until its table's load is in (the page marks it aria-busy meanwhile)."""
    from playwright.sync_api import expect

    page.click(f"#tabs button[data-tab={name}]")
    expect(page.locator(f"#{name}")).to_have_attribute("aria-busy", "false")


def _admin_call(page: Any, query: str, variables: dict[str, Any]) -> Any:
    """The admin GraphQL API from the page, with the session and its CSRF token, as the page calls it."""
    return page.evaluate(
        """async ([query, variables]) => {
             const me = await (await fetch('/web/session')).json();
             const headers = {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf};
             const body = JSON.stringify({query, variables});
             const r = await fetch('/admin/graphql', {method: 'POST', headers, body});
             return r.json();
           }""",
        [query, variables],
    )


def test_apply_approve_read_revoke_in_the_console(served: str, demo_env: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    creds = demo_env.credentials
    hrss = creds["clients"]["hrss"]
    token = httpx.post(
        f"{served}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(hrss["client_id"], hrss["client_secret"]),
    ).json()["access_token"]
    phones, codes = _phones(served, token)
    assert phones == [] and "FORBIDDEN_FIELD" in codes  # before: no grant gives hrss the phone

    # hrss's developer applies for phone, masked, and signs out
    context, page = _signed_in(
        browser, served, "hrss-developer", creds["users"]["hrss-developer"]["password"]
    )
    try:
        expect(page.locator("#who-name")).to_contain_text("hrss")
        expect(page.locator("#kpi-link")).to_have_attribute("href", "/kpi")
        page.select_option("#apply-form select[name=dataset]", "population")
        phone = page.locator("#apply-fields .field[data-name=phone]")
        phone.locator("input[type=checkbox]").check()
        phone.locator("select").select_option("masked")
        page.fill("#apply-form input[name=purpose]", "社保待遇资格认证 联系参保人")
        page.fill("#apply-form input[name=legalBasis]", "《社会保险法》")
        page.click("#apply-send")
        expect(page.locator("#status")).to_contain_text("submitted")
        app_id = int(re.search(r"#(\d+)", page.locator("#status").inner_text()).group(1))  # type: ignore[union-attr]
        row = page.locator(f"#apps tbody tr[data-id='{app_id}']")
        expect(row.locator("td.state")).to_have_text("submitted")
        expect(row).to_contain_text("phone:masked")
        row.locator("button.history").click()
        expect(page.locator("#history ol li")).to_have_count(2)  # create, submit
        with page.expect_navigation():
            page.click("#signout button")
        assert "/oauth/login" in page.url
    finally:
        context.close()

    # a steward of samr: the application is not theirs to see, and the API refuses the approval
    samr_steward = make_user_threaded(demo_env, ["steward"], "samr")
    context, page = _signed_in(browser, served, *samr_steward)
    try:
        _tab(page, "pending")
        expect(page.locator("#pending tbody td.empty")).to_be_visible()
        assert page.locator(f"#pending tbody tr[data-id='{app_id}'] button.approve").count() == 0
        body = _admin_call(page, "mutation($id: Int!) { approveApplication(id: $id) { id } }", {"id": app_id})
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    finally:
        context.close()
    assert _phones(served, token)[0] == []

    # police's steward approves; the share tier returns the phone, masked
    context, page = _signed_in(
        browser, served, "police-steward", creds["users"]["police-steward"]["password"]
    )
    try:
        _tab(page, "pending")
        row = page.locator(f"#pending tbody tr[data-id='{app_id}']")
        expect(row).to_contain_text("hrss")
        row.locator("input.reason").fill("脱敏即可")
        row.locator("button.approve").click()
        expect(page.locator("#status")).to_contain_text(f"#{app_id} ✓")
        expect(row).to_have_count(0)  # decided: no longer pending
        phones = _until(lambda: _phones(served, token)[0])
        assert phones and all(MASKED.fullmatch(p) for p in phones), phones

        # revoke the grant the approval made; the share tier refuses the phone again
        _tab(page, "grants")
        grant = page.locator(f"#grants tbody tr[data-application='{app_id}']")
        expect(grant.locator("td.state")).to_have_text("active")
        grant_id = int(grant.get_attribute("data-id") or 0)
        # renew it (the provider's steward): the new end shows in the list
        until = (datetime.now(UTC) + timedelta(days=700)).date().isoformat()
        grant.locator("input.until").fill(until)
        grant.locator("button.renew").click()
        expect(page.locator("#status")).to_contain_text(f"Renew #{grant_id} ✓")
        expect(grant).to_contain_text(until)
        grant.locator("input.reason").fill("演示结束 demo over")
        grant.locator("button.revoke").click()
        expect(page.locator("#status")).to_contain_text("✓")
        assert _until(lambda: "FORBIDDEN_FIELD" in _phones(served, token)[1])
        assert _phones(served, token)[0] == []
        page.select_option("#grant-filter select[name=state]", "revoked")
        page.click("#grant-filter button[type=submit]")
        expect(grant).to_contain_text("演示结束")
    finally:
        context.close()


def test_return_resubmit_reject_and_demands_and_quality_reports(
    served: str, demo_env: Any, browser: Any
) -> None:
    """The other steps a person takes in the console: a steward returns an application with a
    reason, the applicant answers and resubmits, the steward rejects it (not without a reason);
    a demand filed and answered; a quality report filed and resolved."""
    import itertools

    from playwright.sync_api import expect

    from gateway.demo.generate import DemoGenerator

    creds = demo_env.credentials
    hrss = (creds["users"]["hrss-developer"]["password"],)
    police = (creds["users"]["police-steward"]["password"],)
    someone = list(itertools.islice(DemoGenerator("small").rows("population"), 12))[11][0]
    tag = f"{time.time_ns() % 10**9}"

    context, page = _signed_in(browser, served, "hrss-developer", *hrss)
    try:
        page.select_option("#apply-form select[name=dataset]", "population")
        page.locator("#apply-fields .field[data-name=name] input[type=checkbox]").check()
        page.fill("#apply-form input[name=purpose]", f"核对姓名 {tag}")
        page.fill("#apply-form input[name=legalBasis]", "《社会保险法》")
        page.click("#apply-send")
        expect(page.locator("#status")).to_contain_text("submitted")
        app_id = int(re.search(r"#(\d+)", page.locator("#status").inner_text()).group(1))  # type: ignore[union-attr]
        # a demand to police and a quality report on one of its records
        _tab(page, "demands")
        page.fill("#demand-form input[name=provider]", "police")
        page.fill("#demand-form input[name=description]", f"出入境记录 {tag}")
        page.fill("#demand-form input[name=purpose]", "社保待遇资格认证")
        page.click("#demand-form button[type=submit]")
        expect(page.locator("#demands tbody tr", has_text=tag)).to_contain_text("open")
        _tab(page, "quality")
        page.fill("#quality-form input[name=dataset]", "population")
        page.fill("#quality-form input[name=record]", someone)
        page.fill("#quality-form input[name=field]", "name")
        page.fill("#quality-form input[name=description]", f"姓名有误 {tag}")
        page.click("#quality-form button[type=submit]")
        report = page.locator("#quality tbody tr", has_text=tag)
        expect(report.locator("td.state")).to_have_text("open")
        assert someone not in report.inner_text()  # the 身份证号 is kept as a blind index only
    finally:
        context.close()

    context, page = _signed_in(browser, served, "police-steward", *police)
    try:
        _tab(page, "pending")
        row = page.locator(f"#pending tbody tr[data-id='{app_id}']")
        row.locator("button.return").click()  # no reason: refused, the applicant must be told why
        expect(page.locator("#status")).to_have_class("error")
        expect(row).to_have_count(1)
        row.locator("input.reason").fill("请说明核对范围")
        row.locator("button.return").click()
        expect(page.locator("#status")).to_contain_text("✓")
        expect(row).to_have_count(0)
        _tab(page, "demands")
        demand = page.locator("#demands tbody tr", has_text=tag)
        demand.locator("input[type=date]").fill("2027-03-31")
        demand.locator("button.answer").click()
        expect(demand.locator("td.state")).to_have_text("will_provide")
        _tab(page, "quality")
        report = page.locator("#quality tbody tr", has_text=tag)
        report.locator("input.reason").fill("已更正")
        report.locator("button.resolve").click()
        expect(report.locator("td.state")).to_have_text("fixed_in_time")
    finally:
        context.close()

    context, page = _signed_in(browser, served, "hrss-developer", *hrss)
    try:
        row = page.locator(f"#apps tbody tr[data-id='{app_id}']")
        expect(row.locator("td.state")).to_have_text("returned")
        expect(row).to_contain_text("请说明核对范围")
        row.locator("input.reason").fill("仅核对参保人本人")
        row.locator("button.resubmit").click()
        expect(row.locator("td.state")).to_have_text("submitted")
    finally:
        context.close()

    context, page = _signed_in(browser, served, "police-steward", *police)
    try:
        _tab(page, "pending")
        row = page.locator(f"#pending tbody tr[data-id='{app_id}']")
        row.locator("input.reason").fill("姓名已由其他授权提供")
        row.locator("button.reject").click()
        expect(row).to_have_count(0)
    finally:
        context.close()

    context, page = _signed_in(browser, served, "hrss-developer", *hrss)
    try:
        row = page.locator(f"#apps tbody tr[data-id='{app_id}']")
        expect(row.locator("td.state")).to_have_text("rejected")
        row.locator("button.history").click()
        steps = page.locator("#history ol li")
        expect(steps).to_have_count(5)  # create, submit, return, resubmit, reject
        expect(steps.nth(2)).to_contain_text("请说明核对范围")
    finally:
        context.close()
