"""The officer's page in a real browser (Debian's chromium through Playwright, never a downloaded
browser) against a served gateway: find every access to population.idNumber by hrss in the last
week, open one, export the result as CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.audit.query import CST
from tests.support import serve

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env, SHUQIAO_AUDIT_STORE="chain") as base:
        yield base


def _token(base: str, client_id: str, secret: str) -> str:
    r = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _officer(demo_env: Any, base: str) -> str:
    from gateway.db import create_engine
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
            return await create_client(engine, hasher, "police", scopes=["audit:read"],
                                       client_id=f"officer-b-{uuid.uuid4().hex[:6]}")
        finally:
            await engine.dispose()

    return _token(base, *asyncio.run(make()))


def test_officer_finds_hrss_access_to_population_id_number_and_exports(
    served: str, demo_env: Any, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("chromium is required (apt-get install -y chromium)", pytrace=False)
    from playwright.sync_api import expect, sync_playwright

    creds = demo_env.credentials["clients"]
    hrss = _token(served, creds["hrss"]["client_id"], creds["hrss"]["client_secret"])
    samr = _token(served, creds["samr"]["client_id"], creds["samr"]["client_secret"])
    officer = _officer(demo_env, served)
    tag = uuid.uuid4().hex[:8]
    q_id = "{ population(first: 2) { edges { node { idNumber name } } } }"
    q_name = "{ population(first: 2) { edges { node { name } } } }"
    for rid, token, q in [(f"hrss-id-{tag}-1", hrss, q_id), (f"hrss-id-{tag}-2", hrss, q_id),
                          (f"hrss-name-{tag}", hrss, q_name), (f"samr-id-{tag}", samr, q_id)]:
        r = httpx.post(f"{served}/share/graphql", json={"query": q},
                       headers={"Authorization": f"Bearer {token}", "X-Request-ID": rid})
        assert r.status_code == 200, r.text

    week_ago = (datetime.now(CST) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            page.goto(f"{served}/audit")
            page.fill("#token", officer)
            page.dispatch_event("#token", "change")
            page.fill("input[name=from]", week_ago)
            page.fill("input[name=department]", "hrss")
            page.fill("input[name=field]", "population.idNumber")
            page.click("#search")
            expect(page.locator("#status")).to_contain_text("events match")
            total = int(page.locator("#status").inner_text().split()[0])
            rows = page.locator("#results tbody tr")
            assert rows.count() == min(total, 100) and total >= 2
            texts = rows.all_inner_texts()
            assert all("hrss" in t and "population.id_number" in t for t in texts), texts
            assert not any("samr" in t for t in texts)

            rows.first.click()
            expect(page.locator("#detail pre")).to_contain_text('"department": "hrss"')

            with page.expect_download() as dl:
                page.click("#export-csv")
            target = tmp_path / "export.csv"
            dl.value.save_as(target)
        finally:
            browser.close()

    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    exported = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(exported) == total
    ids = {r["request_id"] for r in exported}
    assert {f"hrss-id-{tag}-1", f"hrss-id-{tag}-2"} <= ids
    assert f"hrss-name-{tag}" not in ids and f"samr-id-{tag}" not in ids
    assert all(r["department"] == "hrss" and "population.id_number:" in r["fields"] for r in exported)
