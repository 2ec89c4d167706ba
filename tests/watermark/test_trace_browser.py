"""The watermark trace page in a real browser (Debian's chromium through Playwright): the demo
security officer signs in, follows the console's link to the trace page, uploads a CSV built from
hrss's marked delivery (half the rows, two columns dropped, renamed, some values edited), sees
hrss named with its false-match probability and the delivering audit events, opens one, and
downloads the signed report; pasted rows from samr's delivery name samr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.audit.signin import browser_sign_in
from tests.support import serve
from tests.watermark.test_trace import Q, mangle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env, SHUQIAO_AUDIT_STORE="chain") as base:
        yield base


def _delivery(base: str, demo_env: Any, dept: str) -> list[dict[str, Any]]:
    c = demo_env.credentials["clients"][dept]
    with httpx.Client(base_url=base, timeout=30) as http:
        grant = {"grant_type": "client_credentials"}
        r = http.post("/oauth/token", data=grant, auth=(c["client_id"], c["client_secret"]))
        token = r.json()["access_token"]
        r = http.post("/share/graphql", json={"query": Q}, headers={"Authorization": f"Bearer {token}"})
    body = r.json()
    assert r.status_code == 200 and "errors" not in body, r.text
    return [e["node"] for e in body["data"]["enterpriseRegistration"]["edges"]]


def test_officer_uploads_a_leak_and_sees_the_consumer_named(
    served: str, demo_env: Any, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    leak = tmp_path / "泄露.csv"
    leak.write_text(mangle(_delivery(served, demo_env, "hrss"), seed=23), encoding="utf-8-sig")
    samr_rows = _delivery(served, demo_env, "samr")[:150]
    officer = ("demo-officer", demo_env.credentials["users"]["demo-officer"]["password"])

    context = browser.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        browser_sign_in(page, served, *officer, start="/audit/watermark")  # back where it asked
        page.wait_for_url(f"{served}/audit/watermark")
        page.click("a[href='/audit']")  # the console links here, and back
        page.wait_for_url(f"{served}/audit")
        page.click("a[href='/audit/watermark']")
        page.wait_for_url(f"{served}/audit/watermark")
        expect(page.locator("#who-roles")).to_have_text("security_officer")

        page.set_input_files("#wm-file", str(leak))
        with page.expect_response(lambda r: "/audit/api/watermark/trace" in r.url) as answer:
            page.click("#wm-trace")
        assert answer.value.status == 200
        expect(page.locator("#wm-verdict strong.recipient")).to_have_text("hrss")
        expect(page.locator("#wm-verdict")).to_contain_text("误匹配概率")
        expect(page.locator("#wm-status")).to_contain_text("识别为 identified: hrss")
        first = page.locator("#wm-candidates tbody tr").first
        expect(first).to_have_attribute("data-recipient", "hrss")
        expect(first).to_have_class("identified")
        rows = page.locator("#wm-deliveries tbody tr")
        expect(rows.first).to_be_visible()
        marks = [t.split("\t")[-1].strip() for t in rows.all_inner_texts()]
        assert marks and all(m.endswith(":hrss") for m in marks), marks

        # a delivery opens as its audit event
        seq = rows.first.get_attribute("data-seq")
        rows.first.locator("a.seq").click()
        expect(page.locator("#wm-event-seq")).to_have_text(f"#{seq}")
        event = json.loads(page.locator("#wm-event pre").inner_text())
        assert event["department"] == "hrss" and event["seq"] == int(seq or 0), event

        # the signed report downloads as the bytes the API answered
        with page.expect_download() as dl:
            page.click("#wm-report")
        saved = Path(dl.value.path()).read_text("utf-8")
        assert json.loads(saved)["identified"]["recipient"] == "hrss"
        with page.expect_download() as dl:
            page.click("#wm-signature")
        assert Path(dl.value.path()).read_bytes().startswith(b"HTTP/1.1 200")

        # pasted rows, no file
        page.set_input_files("#wm-file", [])
        page.fill("#wm-pasted", json.dumps(samr_rows))
        with page.expect_response(lambda r: "/audit/api/watermark/trace" in r.url):
            page.click("#wm-trace")
        expect(page.locator("#wm-verdict strong.recipient")).to_have_text("samr")
    finally:
        context.close()
