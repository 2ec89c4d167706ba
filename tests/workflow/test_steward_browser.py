"""The console's 目录与数据 section in a real browser (Debian's chromium through Playwright): police's
steward opens the live catalogue, sees a file error with its line and what is allowed, dry-runs the
catalogue with a dataset of their own added, applies it, loads a CSV with one bad row (refused
whole, the reject shown with its row number and downloadable; then loaded with one reject allowed),
sees the dataset's size, and the open tier serves it; a change that loses data asks for the
explicit checkbox. A developer sees no such section and the endpoints answer 403.
A demo store of the module's own: police's catalogue changes here."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.audit.signin import browser_sign_in
from tests.catalogue.conftest import dataset_yaml, field_yaml, fresh_demo
from tests.conftest import BACKENDS
from tests.support import serve

DATASET = "steward_browser_fines"
FIELDS = (
    field_yaml("ticket_no", nullable="false")
    + field_yaml("issued_on", "date")
    + field_yaml("amount", "integer")
)
NEW = dataset_yaml("police", DATASET, 999002, FIELDS)
CSV = b"ticket_no,issued_on,amount\nT-1,2026-01-05,200\nT-2,2026-01-06,abc\nT-3,2026-01-07,50\n"
QUERY = "{ stewardBrowserFines(first: 5) { edges { node { ticketNo amount } } } }"
POLLS = 60  # a running gateway rebuilds its schema within a second of a catalogue change
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    store, drop = fresh_demo(request.param, tmp_path_factory.mktemp(f"steward-browser-{request.param}"))
    yield store
    drop()


@pytest.fixture(scope="module")
def served(env: Any) -> Iterator[str]:
    with serve(env) as base:
        yield base


def _signed_in(browser: Any, base: str, env: Any, username: str) -> tuple[Any, Any]:
    from playwright.sync_api import expect

    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    browser_sign_in(page, base, username, env.credentials["users"][username]["password"], start="/console")
    page.wait_for_url(f"{base}/console*")
    expect(page.locator("#apps")).to_have_attribute("aria-busy", "false")
    return context, page


def _fines(base: str) -> list[dict[str, Any]]:
    for _ in range(POLLS):
        body = httpx.post(f"{base}/open/graphql", json={"query": QUERY}).json()
        if body.get("data"):
            return [e["node"] for e in body["data"]["stewardBrowserFines"]["edges"]]
        time.sleep(0.05)
    raise AssertionError(body)


def _datasets_loaded(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#datasets")).to_have_attribute("aria-busy", "false")


def test_a_steward_adds_a_dataset_and_loads_it_in_the_console(served: str, env: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    context, page = _signed_in(browser, served, env, "police-steward")
    try:
        tab = page.locator("#steward-tab")
        expect(tab).to_be_visible()
        tab.click()
        _datasets_loaded(page)
        expect(page.locator("#steward-dept")).to_have_text("police")
        expect(page.locator("#datasets tbody tr[data-code=population]")).to_be_visible()

        # the live catalogue into the editor; a wrong value: the error with its line and what is allowed
        page.click("#catalogue-live")
        text = page.locator("#catalogue-form textarea")
        expect(text).to_have_value(re.compile("code: police"))
        live = text.input_value()
        assert "code: samr" not in live
        page.fill("#catalogue-form textarea", live + NEW.replace("category: theme", "category: thematic"))
        page.click("#catalogue-dry-run")
        error = page.locator("#catalogue-errors tbody tr")
        expect(error).to_have_count(1)
        expect(error.locator("td.where")).to_contain_text(":")
        line = int(error.locator("td.where").inner_text().split(":")[-2])
        assert line > live.count("\n")  # in the part added
        expect(error.locator("td.message")).to_contain_text("base")  # what is allowed
        expect(page.locator("#catalogue-plan")).to_be_hidden()

        # dry run: the new dataset, nothing lost; apply is a second, explicit step
        page.fill("#catalogue-form textarea", live + NEW)
        page.click("#catalogue-dry-run")
        added = page.locator(f"#catalogue-changes li.change.add[data-target={DATASET}]")
        expect(added).to_be_visible()
        expect(page.locator("#catalogue-destructive")).to_be_hidden()
        expect(page.locator("#status")).to_contain_text("not applied yet")
        expect(page.locator(f"#datasets tbody tr[data-code={DATASET}]")).to_have_count(0)
        page.click("#catalogue-apply")
        expect(page.locator("#status")).to_contain_text("changes applied")
        _datasets_loaded(page)
        row = page.locator(f"#datasets tbody tr[data-code={DATASET}]")
        expect(row.locator("td.rows")).to_have_text("—")  # not loaded yet

        # a CSV with one bad row: refused whole, the reject shown with its row number
        page.select_option("#load-form select[name=dataset]", DATASET)
        expect(page.locator("#load-columns")).to_contain_text("ticket_no,issued_on,amount")
        upload = {"name": "fines.csv", "mimeType": "text/csv", "buffer": CSV}
        page.set_input_files("#load-form input[name=file]", upload)
        page.click("#load-send")
        expect(page.locator("#status")).to_contain_text("ROWS_REJECTED")
        reject = page.locator("#rejects tbody tr[data-row='3']")
        expect(reject.locator("td.column")).to_have_text("amount")
        expect(page.locator("#load-summary")).to_contain_text("Nothing was loaded")
        with page.expect_download() as downloaded:
            page.click("#rejects-download")
        assert downloaded.value.suggested_filename == "fines.csv.rejects.csv"
        rejects = Path(downloaded.value.path()).read_text(encoding="utf-8-sig").splitlines()
        assert rejects[0] == "row,column,reason" and rejects[1].startswith("3,amount,")

        # one reject allowed: the two good rows are in, the reject listed again
        page.fill("#load-form input[name=maxRejects]", "1")
        page.set_input_files("#load-form input[name=file]", upload)
        page.click("#load-send")
        expect(page.locator("#status")).to_contain_text("2 / 3")
        expect(page.locator("#rejects tbody tr[data-row='3']")).to_be_visible()
        _datasets_loaded(page)
        expect(row.locator("td.rows")).to_have_text("2")
        expect(row.locator("td.loaded")).not_to_be_empty()
        assert sorted((f["ticketNo"], f["amount"]) for f in _fines(served)) == [("T-1", 200), ("T-3", 50)]

        # a change that loses data: said what is lost, and applied only with the checkbox ticked
        page.fill("#catalogue-form textarea", "")
        page.click("#catalogue-live")
        expect(text).to_have_value(re.compile(DATASET))
        current = text.input_value()
        amount = current.index("- name: amount 项")  # the last field of the last dataset created
        assert DATASET in current[:amount] and "- name:" not in current[amount + 1 :]
        page.fill("#catalogue-form textarea", current[: current.rfind("\n", 0, amount) + 1])
        page.click("#catalogue-dry-run")
        expect(
            page.locator(f"#catalogue-changes li.change.remove[data-target='{DATASET}.amount']")
        ).to_be_visible()
        expect(page.locator("#catalogue-losses")).to_contain_text(f"{DATASET}.amount")
        expect(page.locator("#catalogue-apply")).to_be_disabled()
        page.check("#catalogue-allow")
        expect(page.locator("#catalogue-apply")).to_be_enabled()
        page.uncheck("#catalogue-allow")  # not applied: the dataset keeps its amounts
        expect(page.locator("#catalogue-apply")).to_be_disabled()
    finally:
        context.close()


def test_a_developer_sees_no_steward_section_and_is_refused(served: str, env: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    context, page = _signed_in(browser, served, env, "hrss-developer")
    try:
        expect(page.locator("#steward-tab")).to_be_hidden()
        expect(page.locator("#tab-steward")).to_be_hidden()
        answers = page.evaluate(
            """async () => {
                 const me = await (await fetch('/web/session')).json();
                 const headers = {'X-CSRF-Token': me.csrf, 'Content-Type': 'application/yaml'};
                 const out = [];
                 for (const [method, path, body] of [
                   ['GET', '/admin/data/datasets', null],
                   ['GET', '/admin/catalogue/export', null],
                   ['POST', '/admin/catalogue/apply?dry_run=1', 'datasets: []\\n'],
                   ['POST', '/admin/data/population/load', 'id_number\\n'],
                 ]) {
                   const r = await fetch(path, {method, headers, body});
                   out.push([r.status, (await r.json()).errors[0].extensions.code]);
                 }
                 return out;
               }"""
        )
        assert answers == [[403, "FORBIDDEN"]] * 4, answers
    finally:
        context.close()
