"""The officer's page in a real browser (Debian's chromium through Playwright, never a downloaded
browser) against a served gateway: find every access to population.idNumber by hrss in the last
week, open one, export the result as CSV; see the alerts real requests raised, acknowledge one with
a comment, and never have request-supplied text (an address with markup) rendered as HTML."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.audit.query import CST
from gateway.client_address import normalise_address
from tests.audit.signin import browser_sign_in, make_user_threaded
from tests.support import serve

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env, SHUQIAO_AUDIT_STORE="chain") as base:
        yield base


def _token(base: str, client_id: str, secret: str) -> str:
    r = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _client(demo_env: Any, department: str, scopes: list[str], client_id: str) -> tuple[str, str]:
    from gateway.db import create_engine
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
            cid, secret = await create_client(engine, hasher, department, scopes=scopes, client_id=client_id)
            assert secret is not None
            return cid, secret
        finally:
            await engine.dispose()

    # in a thread of its own: the sync Playwright API keeps an event loop running in this one
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def test_officer_finds_hrss_access_to_population_id_number_and_exports(
    served: str, demo_env: Any, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    creds = demo_env.credentials["clients"]
    hrss = _token(served, creds["hrss"]["client_id"], creds["hrss"]["client_secret"])
    samr = _token(served, creds["samr"]["client_id"], creds["samr"]["client_secret"])
    officer = make_user_threaded(demo_env, ["security_officer"])  # a person, signing in on the page
    tag = uuid.uuid4().hex[:8]
    q_id = "{ population(first: 2) { edges { node { idNumber name } } } }"
    q_name = "{ population(first: 2) { edges { node { name } } } }"
    for rid, token, q in [
        (f"hrss-id-{tag}-1", hrss, q_id),
        (f"hrss-id-{tag}-2", hrss, q_id),
        (f"hrss-name-{tag}", hrss, q_name),
        (f"samr-id-{tag}", samr, q_id),
    ]:
        r = httpx.post(
            f"{served}/share/graphql",
            json={"query": q},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": rid},
        )
        assert r.status_code == 200, r.text

    week_ago = (datetime.now(CST) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S")
    context = browser.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        browser_sign_in(page, served, *officer)
        page.wait_for_url(f"{served}/audit")
        page.fill("#filters input[name=from]", week_ago)
        page.fill("input[name=department]", "hrss")
        page.fill("input[name=field]", "population.idNumber")
        page.click("#search")
        expect(page.locator("#status")).to_contain_text("events match")
        said = re.search(r"([\d,]+) events match", page.locator("#status").inner_text())
        total = int(said[1].replace(",", ""))
        rows = page.locator("#results tbody tr")
        assert rows.count() == min(total, 100) and total >= 2
        texts = rows.all_inner_texts()
        assert all("hrss" in t and "population.id_number" in t for t in texts), texts
        assert not any("samr" in t for t in texts)

        rows.first.click()
        expect(page.locator("#detail pre")).to_contain_text('"department": "hrss"')

        downloads: list[Any] = []
        page.on("download", lambda d: downloads.append(d))
        page.click("#export-csv")
        expect(page.locator("#status")).to_contain_text(".sig")  # both files handed over
        for _ in range(50):  # the events reach Python while Playwright runs
            if len(downloads) == 2:
                break
            page.wait_for_timeout(100)
        names = [d.suggested_filename for d in downloads]
        assert len(names) == 2 and names[1] == names[0] + ".sig", names
        target, signature = tmp_path / names[0], tmp_path / names[1]
        downloads[0].save_as(target)
        downloads[1].save_as(signature)
    finally:
        context.close()

    # the saved export verifies against its detached signature with the gateway's public keys
    from typer.testing import CliRunner

    from gateway.cli import app as shuqiao_app

    result = CliRunner().invoke(
        shuqiao_app,
        [
            "verify-response",
            str(signature),
            "--body",
            str(target),
            "--keys-url",
            f"{served}/keys/sm2",
            "--json",
        ],
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True, result.stdout
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    exported = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(exported) == total
    ids = {r["request_id"] for r in exported}
    assert {f"hrss-id-{tag}-1", f"hrss-id-{tag}-2"} <= ids
    assert f"hrss-name-{tag}" not in ids and f"samr-id-{tag}" not in ids
    assert all(r["department"] == "hrss" and "population.id_number:" in r["fields"] for r in exported)


# uvicorn trusts X-Forwarded-For from 127.0.0.1 (its default) and takes the text whole; the gateway
# records only an IP, anything else as "invalid:<digest>" (gateway/client_address.py)
MARKUP = "<img src=x onerror=window.__xss=1>"
# the officer's way to wait for the evaluator (it runs beside the request path, every second):
# press Refresh until the alerts show (waitForFunction does not await a promise, so no fetch here)
REFRESH_UNTIL = """([principal, count]) => {
  if (document.querySelector("#alerts").getAttribute("aria-busy") === "true") return false;
  const rows = [...document.querySelectorAll("#alerts tbody tr")];
  if (rows.filter((tr) => tr.textContent.includes(principal)).length >= count) return true;
  document.querySelector("#alerts-refresh").click();
  return false;
}"""


def test_officer_acknowledges_alerts_raised_by_real_requests_and_markup_stays_text(
    served: str, demo_env: Any, browser: Any
) -> None:
    from playwright.sync_api import expect

    tag = uuid.uuid4().hex[:8]
    # an administrator may name a client anything: markup in a principal id must stay text too
    prober_id, officer_id = f"probe-<b>{tag}</b>", f"officer-a-{tag}"
    prober = _token(served, *_client(demo_env, "samr", ["share:read"], prober_id))
    officer = _token(served, *_client(demo_env, "police", ["audit:read"], officer_id))
    person = make_user_threaded(demo_env, ["security_officer"])  # on the page; the client token for the API
    as_officer = {"Authorization": f"Bearer {officer}"}
    # first a client seen from 21 addresses: 20 new_address alerts, more than the page's 20 per page
    hopper_id = f"hop-{tag}"
    hopper_token = _token(served, *_client(demo_env, "samr", ["share:read"], hopper_id))
    hopper = {"Authorization": f"Bearer {hopper_token}"}
    with httpx.Client(base_url=served) as http:
        for i in range(21):
            forwarded = {"X-Forwarded-For": f"10.77.0.{i}"} if i else {}
            r = http.post("/share/graphql", json={"query": "{ __typename }"}, headers={**hopper, **forwarded})
            assert r.status_code == 200, r.text
    # samr may read neither field: 2 refusals a request, the 20th crosses the default threshold (the
    # default, because the session's in-process gateway evaluates alerts from the same chain too)
    q = "{ population(first: 2) { edges { node { idNumber name } } } }"
    with httpx.Client(base_url=served, headers={"Authorization": f"Bearer {prober}"}) as http:
        for _ in range(10):
            r = http.post("/share/graphql", json={"query": q})
            assert r.status_code == 200 and "FORBIDDEN_FIELD" in r.text, r.text
    # then the same client through a proxy that forwards an "address" carrying markup: new_address,
    # recorded under a digest, never as the forwarded text
    r = httpx.post(
        f"{served}/share/graphql",
        json={"query": "{ __typename }"},
        headers={"Authorization": f"Bearer {prober}", "X-Forwarded-For": MARKUP},
    )
    assert r.status_code == 200, r.text

    context = browser.new_context()
    try:
        page = context.new_page()
        browser_sign_in(page, served, *person)
        page.wait_for_url(f"{served}/audit")
        person_id = page.evaluate("fetch('/web/session').then((r) => r.json()).then((me) => me.user_id)")
        # the prober's two alerts come from the newest events: once shown, the hopper's 20 are stored
        page.wait_for_function(REFRESH_UNTIL, arg=[prober_id, 2], polling=250, timeout=20_000)
        expect(page.locator("#alerts-status")).to_have_text("20 open alerts shown, more available")
        assert page.locator("#alert-filters select[name=state]").input_value() == "open"
        # paging: the newest 20 (the prober's two, then the hopper's), "More" fetches before the last id
        rows = page.locator("#alerts tbody tr")
        expect(rows).to_have_count(20)
        expect(page.locator("#alerts tbody tr", has_text=hopper_id)).to_have_count(18)
        page.click("#alerts-more")
        expect(page.locator("#alerts tbody tr", has_text=hopper_id)).to_have_count(20)
        ids = [int(i) for i in rows.evaluate_all("(trs) => trs.map((tr) => tr.dataset.id)")]
        assert ids == sorted(set(ids), reverse=True) and len(ids) > 20, ids
        api = {
            a["rule"]: a
            for a in httpx.get(
                f"{served}/audit/api/alerts", headers=as_officer, params={"state": "all"}
            ).json()["alerts"]
            if a["principal_id"] == prober_id
        }
        assert set(api) == {"forbidden_probing", "new_address"}
        expect(page.locator("#alerts tbody tr", has_text=prober_id)).to_have_count(2)
        row = lambda rule: page.locator(f"#alerts tbody tr[data-id='{api[rule]['id']}']")  # noqa: E731
        probe, moved = row("forbidden_probing"), row("new_address")
        expect(probe.locator("td.rule")).to_have_text("forbidden_probing")
        expect(moved.locator("td.rule")).to_have_text("new_address")
        cells = probe.locator("td").all_inner_texts()
        assert cells[0] == str(api["forbidden_probing"]["id"]) and cells[2:4] == [prober_id, "samr"]
        assert cells[5].split()[0] == f"#{api['forbidden_probing']['seq']}"  # then the "events" link
        assert "was refused 20 fields" in cells[6]
        assert cells[7] == "open 未处理"
        at = datetime.fromisoformat(api["forbidden_probing"]["occurred_at"]).astimezone(CST)  # Beijing
        assert cells[4] == f"{at.year}/{at.month}/{at.day} {at:%H:%M:%S}", cells[4]

        # the address with markup is text: the exact characters shown, no element made, nothing run
        summary = moved.locator("td.summary")
        forged = normalise_address(MARKUP)
        assert forged is not None and forged.startswith("invalid:")
        expect(summary).to_have_text(f"{prober_id} used from a new address {forged}")
        assert page.locator("#alerts img, #alerts b").count() == 0
        assert page.evaluate("window.__xss") is None
        # its event seq opens the existing event detail
        moved.locator("button.seq").click()
        expect(page.locator("#detail-seq")).to_have_text(f"#{api['new_address']['seq']}")
        expect(page.locator("#detail pre")).to_contain_text(f'"client_address": "{forged}"')
        assert MARKUP not in page.locator("#detail pre").inner_text()
        assert page.locator("#detail img").count() == 0

        # no comment: the button stays disabled; blanks submitted with Enter are refused on the page
        comment_box, ack = probe.locator("input[name=comment]"), probe.locator("form.ack button")
        expect(ack).to_be_disabled()
        comment_box.fill("   ")
        expect(ack).to_be_disabled()
        comment_box.press("Enter")
        expect(page.locator("#alerts-status")).to_have_text(
            f"告警 #{api['forbidden_probing']['id']}: 请填写处理意见 — a comment is required to acknowledge."
        )
        expect(page.locator("#alerts-status")).to_have_class("error")

        # with a comment (itself holding markup): acknowledged, gone from the open list
        comment = f"核实：<b>{tag}</b> 夜间批处理，已报备"
        comment_box.fill(comment)
        expect(ack).to_be_enabled()
        ack.click()
        expect(page.locator("#alerts-status")).to_contain_text(
            f"告警 #{api['forbidden_probing']['id']} 已确认 acknowledged"
        )
        expect(page.locator("#alerts tbody tr", has_text=prober_id)).to_have_count(1)
        page.select_option("#alert-filters select[name=state]", "acknowledged")
        expect(page.locator("#alerts")).to_have_attribute("aria-busy", "false")
        done = row("forbidden_probing")
        expect(done.locator("td.state")).to_have_text("acknowledged 已确认")
        expect(done.locator(".comment")).to_have_text(comment)
        expect(done.locator(".ack-by")).to_contain_text(f"shuqiao-web/{person_id}")
        assert page.locator("#alerts b, #alerts img").count() == 0

        # the rule filter
        page.select_option("#alert-filters select[name=state]", "open")
        page.select_option("#alert-filters select[name=rule]", "new_address")
        expect(page.locator("#alerts")).to_have_attribute("aria-busy", "false")  # the list reloaded
        expect(moved).to_have_count(1)
        assert set(page.locator("#alerts td.rule").all_inner_texts()) == {"new_address"}

        # acknowledged elsewhere meanwhile: the page says so in text (409) and drops the stale row
        r = httpx.post(
            f"{served}/audit/api/alerts/{api['new_address']['id']}/ack",
            json={"comment": "另一位审计员已处理"},
            headers=as_officer,
        )
        assert r.status_code == 200, r.text
        moved.locator("input[name=comment]").fill("重复确认")
        moved.locator("form.ack button").click()
        expect(page.locator("#alerts-status")).to_have_text(
            f"告警 #{api['new_address']['id']} 未确认 not acknowledged: The alert was already acknowledged."
        )
        expect(page.locator("#alerts-status")).to_have_class("error")
        expect(moved).to_have_count(0)
    finally:
        context.close()

    # the page's acknowledgement is an audit event: operation ack-alert, the alert id and comment sealed
    def acks_by(principal: str) -> list[dict[str, Any]]:
        events = httpx.get(
            f"{served}/audit/api/events",
            headers=as_officer,
            params={"tier": "audit", "principal": principal, "limit": 100},
        ).json()["events"]
        return [e for e in events if e["operation_name"] == "ack-alert"]

    acks = acks_by(person_id)  # the person's, on the page; the client's own (200) over the API
    assert sorted(e["status"] for e in acks) == [200, 409], acks
    assert [e["status"] for e in acks_by(officer_id)] == [200]
    sealed = [
        httpx.get(f"{served}/audit/api/events/{e['seq']}", headers=as_officer).json()["variables"]
        for e in acks
    ]
    assert {"id": api["forbidden_probing"]["id"], "comment": comment} in [
        {k: v for k, v in s.items() if k in ("id", "comment")} for s in sealed
    ]


def test_a_capped_total_reads_more_than_and_the_exact_count_is_asked_for(
    served: str, demo_env: Any, browser: Any
) -> None:
    """Past 10,000 matches the API stops counting (total_exact false): the page says "超过 10,000
    条" and offers the exact count, which asks the API again with exact=true. The API's answers
    are stood in for here (10,000 events would take the test minutes to make)."""
    from playwright.sync_api import expect

    officer = make_user_threaded(demo_env, ["security_officer"])
    asked: list[str] = []

    def answer(route: Any) -> None:
        exact = "exact=true" in route.request.url
        asked.append(route.request.url)
        route.fulfill(
            json={
                "filters": {"dataset": "population"},
                "total": 123456 if exact else 10000,
                "total_exact": exact,
                "events": [],
                "next_before": None,
            }
        )

    context = browser.new_context()
    try:
        page = context.new_page()
        browser_sign_in(page, served, *officer)
        page.wait_for_url(f"{served}/audit")
        page.route("**/audit/api/events?*", answer)
        page.fill("input[name=dataset]", "population")
        page.click("#search")
        expect(page.locator("#status")).to_have_text("超过 10,000 条 · 10,000+ events match")
        expect(page.locator("#exact")).to_be_visible()
        page.click("#exact")
        expect(page.locator("#status")).to_have_text("共 123,456 条 · 123,456 events match")
        expect(page.locator("#exact")).to_be_hidden()
        assert ["exact=true" in u for u in asked] == [False, True]
        assert all("dataset=population" in u for u in asked)
    finally:
        context.close()
