"""The /stats page in a real browser (Debian's chromium through Playwright), with JavaScript and
without: a visitor's calls and downloads show on the page as the JSON twin counts them, the period
and the dataset are chosen by links, every chart opens into its table, nothing is blocked by the
CSP and nothing is cut off on a phone-sized screen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support import serve

CODE, NAME = "discharge_permit", "排污许可"
QUERY = "{ dischargePermit(first: 2) { totalCount } }"
POLLS = 50
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base


def _roll_up(demo_env: Any) -> None:
    """Count the events now, rather than waiting for the gateway's rollup task (same code, same lock)."""
    from gateway.db import create_engine
    from gateway.portal.usage import roll_up_pending

    async def go() -> None:
        engine = create_engine(demo_env.settings.database_url)
        try:
            await roll_up_pending(engine)
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs an event loop in this thread
        pool.submit(asyncio.run, go()).result()


def _used(base: str) -> dict[str, Any]:
    doc = httpx.get(f"{base}/stats.json", params={"days": 30}).json()
    return next(d for d in doc["datasets"] if d["dataset"] == CODE)


def _visitor_uses_the_dataset(base: str, demo_env: Any) -> dict[str, Any]:
    _roll_up(demo_env)
    before = _used(base)
    for _ in range(3):
        r = httpx.post(f"{base}/open/graphql", json={"query": QUERY})
        assert r.status_code == 200 and "errors" not in r.json(), r.text
    for _ in range(2):
        assert httpx.get(f"{base}/open/download/{CODE}.csv").status_code == 200
    # A download's closing event is written once its last byte is sent, so it may land just after
    # the client has the whole file: look again (bounded) until both downloads are in.
    for _ in range(POLLS):
        _roll_up(demo_env)
        after = _used(base)
        moved = (after["calls"] - before["calls"], after["downloads"] - before["downloads"])
        if moved[1] >= 2:
            break
        time.sleep(0.1)
    assert moved == (3, 2)
    return after


def _check_page(page: Any, base: str, used: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/stats")
    expect(page.locator("h1")).to_contain_text("开放数据使用统计")
    expect(page.locator('nav.periods a[aria-current="page"]')).to_have_text("近 30 天")
    row = page.locator("#datasets tbody tr", has=page.locator(f'a[href="/stats?days=30&dataset={CODE}"]'))
    expect(row.locator("td.num").nth(0)).to_have_text(f"{used['calls']:,}")
    expect(row.locator("td.num").nth(1)).to_have_text(f"{used['downloads']:,}")
    assert page.locator('svg[role="img"]').count() == 2
    assert "调用" in (page.locator('svg[role="img"]').first.get_attribute("aria-label") or "")

    # the chart's table, behind its summary
    details = page.locator("#h-daily ~ details")
    expect(details.locator("table")).to_be_hidden()
    details.locator("summary").click()
    expect(details.locator("table")).to_be_visible()

    # another period, from the keyboard
    page.focus('nav.periods a[href="/stats?days=7"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/stats?days=7")
    expect(page.locator('nav.periods a[aria-current="page"]')).to_have_text("近 7 天")

    # one dataset, per day: today's row is the dataset's JSON for today
    page.click(f'#datasets a[href="/stats?days=7&dataset={CODE}"]')
    page.wait_for_url(f"{base}/stats?days=7&dataset={CODE}")
    expect(page.locator("#h-dataset")).to_contain_text(NAME)
    today = httpx.get(f"{base}/stats/datasets/{CODE}.json", params={"days": 1}).json()["days"][0]
    page.locator("#h-dataset ~ details summary").click()
    first = page.locator("#h-dataset ~ details tbody tr").first
    expect(first.locator("th")).to_have_text(today["date"])
    expect(first.locator("td").nth(0)).to_have_text(f"{today['calls']:,}")
    expect(first.locator("td").nth(1)).to_have_text(f"{today['downloads']:,}")


def _check_closed_dataset(page: Any, base: str) -> None:
    """A dataset that is not open: a page that says so, in Chinese."""
    from playwright.sync_api import expect

    response = page.goto(f"{base}/stats?dataset=population")
    assert response is not None and response.status == 404
    expect(page.locator('[role="alert"]')).to_contain_text("没有这个开放数据集")


def test_stats_page_with_javascript(served: str, demo_env: Any, browser: Any) -> None:
    used = _visitor_uses_the_dataset(served, demo_env)
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        _check_page(page, served, used)
        assert problems == []  # no CSP violation, no failed asset
        _check_closed_dataset(page, served)

        # a phone-sized screen: the wide tables scroll inside their box, the page does not
        page.set_viewport_size({"width": 360, "height": 740})
        page.goto(f"{served}/stats")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        wrap = page.locator("#datasets").locator("xpath=..")
        assert page.evaluate("(el) => el.scrollWidth > el.clientWidth", wrap.element_handle())
    finally:
        context.close()


def test_stats_page_without_javascript(served: str, demo_env: Any, browser: Any) -> None:
    used = _used(served)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        _check_page(page, served, used)
        _check_closed_dataset(page, served)
    finally:
        context.close()
