"""The officers' console in a real browser (Debian's chromium through Playwright): the demo security
officer signs in with a username and password on the sign-in page, sees the posture panels with
the numbers of their JSON twin, opens the events behind an alert raised by a probing client, and
signs out; a signed-in person who is not an officer gets 403 on the page and its API."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.audit.query import CST
from tests.audit.signin import browser_sign_in, make_user_threaded
from tests.support import serve

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env, SHUQIAO_AUDIT_STORE="chain") as base:
        yield base


def _token(base: str, client_id: str, secret: str) -> str:
    r = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


# the number a panel shows, by its data-k, from the JSON twin
def _twin(doc: dict[str, Any], key: str) -> int:
    p = doc[key.split(".", 1)[0]]
    if key == "traffic.total.requests":
        return p["total"]["requests"]
    if key == "traffic.total.refused":
        return p["total"]["refused"]
    if key == "sensitive.field_reads":
        return p["field_reads"]
    if key == "grants.expiring":
        return len(p["expiring"])
    if key == "unusual.forbidden_probes":
        return sum(x["refusals"] for x in p["forbidden_probes"])
    if key == "unusual.first_access":
        return len(p["first_access"])
    raise KeyError(key)


def test_officer_signs_in_reads_the_posture_opens_an_alerts_events_and_signs_out(
    served: str, demo_env: Any, browser: Any
) -> None:
    from playwright.sync_api import expect

    creds = demo_env.credentials
    samr = _token(served, creds["clients"]["samr"]["client_id"], creds["clients"]["samr"]["client_secret"])
    hrss = _token(served, creds["clients"]["hrss"]["client_id"], creds["clients"]["hrss"]["client_secret"])
    q = "{ population(first: 2) { edges { node { idNumber name } } } }"
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=served) as http:
        for i in range(10):  # samr may read neither field: 20 refusals, the probing threshold
            r = http.post(
                "/share/graphql",
                json={"query": q},
                headers={"Authorization": f"Bearer {samr}", "X-Request-ID": f"probe-{tag}-{i}"},
            )
            assert r.status_code == 200 and "FORBIDDEN_FIELD" in r.text, r.text
        r = http.post("/share/graphql", json={"query": q}, headers={"Authorization": f"Bearer {hrss}"})
        assert r.status_code == 200, r.text
        # police looks one person up by 身份证号: the person view finds it by the blind index
        from gateway.demo.generate import DemoGenerator

        police = _token(
            served, creds["clients"]["police"]["client_id"], creds["clients"]["police"]["client_secret"]
        )
        someone = list(itertools.islice(DemoGenerator("small").rows("population"), 8))[7][
            0
        ]  # no other test's
        lookup = "query($id: String!) { person(idNumber: $id) { population { name } } }"
        r = http.post(
            "/share/graphql",
            json={"query": lookup, "variables": {"id": someone}},
            headers={"Authorization": f"Bearer {police}"},
        )
        assert r.status_code == 200 and "errors" not in r.json(), r.text
    # a closed period ending at the next whole second (the form takes seconds): its counts cannot
    # move while the officer's own calls arrive
    now = datetime.now(CST)
    time.sleep(1 - now.microsecond / 1e6 + 0.01)
    to = (now + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    since = (datetime.now(CST) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    officer = {"username": "demo-officer", "password": creds["users"]["demo-officer"]["password"]}

    context = browser.new_context()
    try:
        page = context.new_page()
        # no session: the page sends the browser to the sign-in page
        page.goto(f"{served}/audit")
        assert "/oauth/authorize" in page.url and page.locator("#password").count() == 1
        browser_sign_in(page, served, officer["username"], officer["password"])
        page.wait_for_url(f"{served}/audit")
        expect(page.locator("#who-name")).to_contain_text("演示安全管理员")
        expect(page.locator("#who-roles")).to_have_text("security_officer")
        assert page.locator("#token").count() == 0

        # the dashboard for the closed period; each number as its JSON twin says
        page.wait_for_selector("body[data-posture-loaded]")  # the first load (the last day) is in
        page.fill("#period input[name=from]", since)
        page.fill("#period input[name=to]", to)
        with page.expect_response(lambda r: "/audit/api/posture?" in r.url) as answer:
            page.click("#posture-refresh")
        twin_on_page = answer.value.json()
        expect(page.locator("#posture-status")).to_contain_text("北京时间")
        twin = httpx.get(
            f"{served}/audit/api/posture",
            params={"from": since, "to": to},
            headers={"Authorization": f"Bearer {_officer_token(served, demo_env)}"},
        ).json()
        for key in (
            "traffic.total.requests",
            "traffic.total.refused",
            "sensitive.field_reads",
            "grants.expiring",
            "unusual.forbidden_probes",
            "unusual.first_access",
        ):
            shown = page.locator(f".num[data-k='{key}']").inner_text()
            assert int(shown) == _twin(twin, key) == _twin(twin_on_page, key), key
        assert _twin(twin, "unusual.forbidden_probes") >= 20 and _twin(twin, "sensitive.field_reads") >= 2
        assert page.locator("#panel-traffic svg g").count() >= 2  # bars drawn for tiers and departments
        for panel in ("traffic", "sensitive", "alerts", "grants", "unusual", "chain"):
            expect(page.locator(f"#panel-{panel} .body")).not_to_be_empty()

        # the consumer view: hrss's read in the period, beside the grant it was made under
        page.fill("#consumer-form input[name=code]", "hrss")
        with page.expect_response(lambda r: "/audit/api/consumer?" in r.url) as view:
            page.click("#consumer-open")
        consumer = view.value.json()
        expect(page.locator(".num[data-k='consumer.requests']")).to_have_text(str(consumer["requests"]))
        assert consumer["requests"] >= 1 and consumer["reads"][0]["grants"], consumer["reads"][:1]
        expect(page.locator("#consumer-reads tbody tr")).to_have_count(len(consumer["reads"]))
        first_grant = consumer["reads"][0]["grants"][0]
        expect(page.locator("#consumer-reads tbody tr").first).to_contain_text(f"#{first_grant['id']}")

        # the person view: the lookup above, by police, found without the number in the log
        page.fill("#person-form input[name=id_number]", someone)
        with page.expect_response(lambda r: "/audit/api/person?" in r.url) as found:
            page.click("#person-open")
        person = found.value.json()
        assert [r["consumer"] for r in person["reads"]] == ["police"], person
        expect(page.locator("#person-reads tbody tr")).to_have_count(1)
        expect(page.locator("#person-status")).to_contain_text("1 次读取")

        # the probing alert (the evaluator runs every second: refresh until it is there)
        samr_id = creds["clients"]["samr"]["client_id"]
        alert_row = page.locator(
            "#alerts tbody tr", has=page.locator("td.rule", has_text="forbidden_probing")
        )
        for _ in range(40):
            page.click("#alerts-refresh")
            expect(page.locator("#alerts")).to_have_attribute("aria-busy", "false")
            if (
                page.locator("#alerts tbody tr", has_text=samr_id)
                .filter(has_text="forbidden_probing")
                .count()
            ):
                break
            page.wait_for_timeout(250)
        probe = alert_row.filter(has_text=samr_id).first
        probe.locator("button.events").click()
        expect(page.locator("#status")).to_contain_text("events match")
        rows = page.locator("#results tbody tr")
        assert rows.count() >= 1
        assert all(samr_id in t for t in rows.all_inner_texts())
        assert page.locator("#filters input[name=principal]").input_value() == samr_id
        # and from the posture panel to the events behind a number
        page.locator("#panel-unusual button.link", has_text=samr_id).first.click()
        expect(page.locator("#status")).to_contain_text("events match")
        assert page.locator("#filters select[name=decision]").input_value() == "deny"

        # sign out: back to the sign-in page; the console asks to sign in again
        with page.expect_navigation():
            page.click("#signout button")
        assert "/oauth/login" in page.url, page.content()[:600]
        page.goto(f"{served}/audit")
        assert "/oauth/authorize" in page.url and page.locator("#password").count() == 1
    finally:
        context.close()


def _officer_token(served: str, demo_env: Any) -> str:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from gateway.db import create_engine
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str | None]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
            return await create_client(engine, hasher, "police", scopes=["audit:read"])
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        cid, secret = pool.submit(lambda: asyncio.run(make())).result()
    assert secret is not None
    return _token(served, cid, secret)


def test_a_signed_in_non_officer_gets_403(served: str, demo_env: Any, browser: Any) -> None:
    developer = make_user_threaded(demo_env, ["developer"], "hrss")
    context = browser.new_context()
    try:
        page = context.new_page()
        answer = browser_sign_in(page, served, *developer)
        assert answer is not None and answer.status == 403 and page.url == f"{served}/audit"
        assert page.goto(f"{served}/audit").status == 403
        for path in ("/audit/api/posture", "/audit/api/events", "/audit/api/alerts", "/audit/api/export"):
            status = page.evaluate(f"fetch('{path}').then((r) => r.status)")
            assert status == 403, path
        me = page.evaluate("fetch('/web/session').then((r) => r.json())")
        assert me["roles"] == ["developer"]
    finally:
        context.close()
