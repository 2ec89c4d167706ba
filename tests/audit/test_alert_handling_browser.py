"""Alert handling in a real browser (Debian's chromium through Playwright): the demo security
officer signs in, sees the alert a probing client raised, assigns it to another officer, comments
and closes it with a reason; the list, the state and the history say so, and the JSON twin agrees.
Then exports a person view as a signed bundle that `shuqiao audit verify-archive` accepts offline."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.audit.signin import browser_sign_in, make_user_threaded
from tests.audit.test_officer_console_browser import _officer_token, _token
from tests.support import serve

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env, SHUQIAO_AUDIT_STORE="chain") as base:
        yield base


def _prober(demo_env: Any) -> tuple[str, str]:
    """A new share:read client of samr: a probing window of its own, so its alert is new."""
    from gateway.db import create_engine
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
            cid, secret = await create_client(
                engine, hasher, "samr", scopes=["share:read"], client_id=f"prober-{uuid.uuid4().hex[:6]}"
            )
            assert secret is not None
            return cid, secret
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def test_officer_assigns_comments_and_closes_a_probing_alert(
    served: str, demo_env: Any, browser: Any
) -> None:
    from playwright.sync_api import expect

    prober_id, secret = _prober(demo_env)
    token = _token(served, prober_id, secret)
    q = "{ population(first: 2) { edges { node { idNumber name } } } }"
    with httpx.Client(base_url=served) as http:
        for _ in range(10):  # samr may read neither field: 20 refusals, the probing threshold
            r = http.post("/share/graphql", json={"query": q}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and "FORBIDDEN_FIELD" in r.text, r.text
    colleague, _ = make_user_threaded(demo_env, ["security_officer"])
    officer = demo_env.credentials["users"]["demo-officer"]

    context = browser.new_context()
    try:
        page = context.new_page()
        browser_sign_in(page, served, "demo-officer", officer["password"])
        page.wait_for_url(f"{served}/audit")
        page.select_option("#alert-filters select[name=state]", "active")
        row = page.locator("#alerts tbody tr", has_text=prober_id)
        for _ in range(60):  # the evaluator runs every second: refresh until the alert is there
            page.click("#alerts-refresh")
            expect(page.locator("#alerts")).to_have_attribute("aria-busy", "false")
            if row.count():
                break
            page.wait_for_timeout(250)
        expect(row).to_have_count(1)
        expect(row.locator("td.rule")).to_have_text("forbidden_probing")
        expect(row.locator("td.state")).to_have_text("open 未处理")
        alert_id = row.get_attribute("data-id")

        # assign to the colleague
        row.locator("details.handle summary").click()
        expect(row.locator(f"select[name=assignee] option[value='{colleague}']")).to_have_count(1)
        assign = row.locator("form.assign button")
        expect(assign).to_be_disabled()
        row.locator("select[name=assignee]").select_option(colleague)
        assign.click()
        expect(page.locator("#alerts-status")).to_contain_text(
            f"告警 #{alert_id} 已指派 assigned to {colleague}"
        )
        expect(row.locator("td.state")).to_have_text(f"assigned 已指派 → {colleague}")

        # comment (the button waits for words)
        row.locator("details.handle summary").click()
        say = row.locator("form.comment-form button")
        expect(say).to_be_disabled()
        row.locator("form.comment-form input[name=comment]").fill("已电话联系 samr：接口调试 <b>误用</b>")
        say.click()
        expect(page.locator("#alerts-status")).to_contain_text(f"告警 #{alert_id} 已评论")

        # close with a reason: "other" needs a note, false positive does not
        row.locator("details.handle summary").click()
        close = row.locator("form.close button")
        row.locator("select[name=reason]").select_option("other")
        expect(close).to_be_disabled()
        row.locator("select[name=reason]").select_option("false_positive")
        row.locator("form.close input[name=comment]").fill("调试流量，非攻击")
        close.click()
        expect(page.locator("#alerts-status")).to_contain_text(
            f"告警 #{alert_id} 已关闭 closed: 误报 false positive"
        )
        expect(row).to_have_count(0)  # no longer among the alerts not closed

        page.select_option("#alert-filters select[name=state]", "closed")
        expect(page.locator("#alerts")).to_have_attribute("aria-busy", "false")
        expect(row.locator("td.state")).to_have_text("closed 已关闭 · 误报 false positive")
        row.locator("details.handle summary").click()
        history = row.locator("ol.history li")
        expect(history).to_have_count(3)
        expect(history.nth(0)).to_contain_text(f"→ {colleague}")
        expect(history.nth(1)).to_contain_text("已电话联系 samr：接口调试 <b>误用</b>")  # text, not HTML
        expect(history.nth(2)).to_contain_text("调试流量，非攻击")
        assert page.locator("#alerts b").count() == 0
        expect(row.locator("form.assign")).to_have_count(0)  # closed: comments only
    finally:
        context.close()

    # the JSON twin says the same; each action was an audit event by the signed-in officer
    officer_token = _officer_token(served, demo_env)
    h = {"Authorization": f"Bearer {officer_token}"}
    doc = httpx.get(f"{served}/audit/api/alerts/{alert_id}", headers=h).json()
    assert (doc["state"], doc["assignee"], doc["close_reason"]) == ("closed", colleague, "false_positive")
    assert [x["action"] for x in doc["history"]] == ["assign", "comment", "close"]
    events = httpx.get(f"{served}/audit/api/events", params={"tier": "audit", "limit": 200}, headers=h).json()
    ops = {
        e["operation_name"] for e in events["events"] if e["status"] == 200 and e["principal_kind"] == "user"
    }
    assert {"assign-alert", "comment-alert", "close-alert"} <= ops


def test_officer_exports_a_person_view_as_a_bundle_that_verifies_offline(
    served: str, demo_env: Any, browser: Any, tmp_path: Any
) -> None:
    import itertools

    from playwright.sync_api import expect
    from typer.testing import CliRunner

    from gateway.audit.cli import audit_app
    from gateway.demo.generate import DemoGenerator

    creds = demo_env.credentials
    police = _token(
        served, creds["clients"]["police"]["client_id"], creds["clients"]["police"]["client_secret"]
    )
    someone = list(itertools.islice(DemoGenerator("small").rows("population"), 12))[11][0]  # no other test's
    lookup = "query($id: String!) { person(idNumber: $id) { population { name } } }"
    r = httpx.post(
        f"{served}/share/graphql",
        json={"query": lookup, "variables": {"id": someone}},
        headers={"Authorization": f"Bearer {police}"},
    )
    assert r.status_code == 200 and "errors" not in r.json(), r.text

    context = browser.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        browser_sign_in(page, served, "demo-officer", creds["users"]["demo-officer"]["password"])
        page.wait_for_url(f"{served}/audit")
        page.fill("#person-form input[name=id_number]", someone)
        with page.expect_download() as download:
            page.click("#person-bundle")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        expect(page.locator("#person-status")).to_contain_text("已导出签名包")
    finally:
        context.close()
    assert saved.name.startswith("audit-bundle-person-") and someone.encode() not in saved.read_bytes()
    kid = httpx.get(f"{served}/keys/sm2").json()["keys"]
    header = saved.read_bytes().split(b"\n")[0].decode()
    pem = next(k["pem"] for k in kid if f'"kid":"{k["kid"]}"' in header)
    (tmp_path / "gateway.pub.pem").write_text(pem)
    checked = CliRunner().invoke(
        audit_app, ["verify-archive", str(saved), "--pubkey", str(tmp_path / "gateway.pub.pem")]
    )
    assert checked.exit_code == 0 and "bundle verified: 1 events" in checked.output, checked.output
    assert "person view" in checked.output
