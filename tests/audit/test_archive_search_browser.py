"""The officer's page searches the archives retention left (Debian's chromium through Playwright,
never a downloaded browser, against a served gateway of this module's own, since pruning takes the
chain): after a prune the live chain no longer holds the requests, the 归档 archives choice finds them
with the same filters, says it reads the archives in place and which it read, shows each event's
archive file and its archived row, pages on with "More" (before/next_before), and shows an error
Chinese first."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.audit.query import CST
from tests.audit.signin import browser_sign_in, make_user_threaded
from tests.conftest import DemoEnv, create_database, init_store, load_demo_env, settings_for
from tests.support import serve

pytestmark = pytest.mark.browser
OPEN = "{ enterpriseRegistration(first: 1) { totalCount } }"


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnv]:
    tmp = tmp_path_factory.mktemp("archive-page")
    url, drop = create_database("sqlite", tmp)  # PostgreSQL: tests/audit/test_archive_search.py
    settings = settings_for(url, tmp / "var")
    init_store(settings)
    yield DemoEnv("sqlite", settings, load_demo_env(settings))
    drop()


@pytest.fixture(scope="module")
def served(demo_env: DemoEnv) -> Iterator[str]:
    with serve(demo_env, SHUQIAO_AUDIT_STORE="chain", SHUQIAO_ANONYMOUS_RATE="100000/minute") as base:
        yield base


def _prune(demo_env: DemoEnv) -> str:
    """Archive and prune the chain through a checkpoint written now; the archive's file name."""
    from gateway.audit.checkpoints import write_checkpoint
    from gateway.audit.retention import archive_and_prune, archive_dir
    from gateway.crypto.signing import open_signing_store
    from gateway.db import create_engine

    async def go() -> str:
        engine = create_engine(demo_env.settings.database_url)
        try:
            store = open_signing_store(demo_env.settings.var_dir)
            checkpoint = await write_checkpoint(engine, store)
            assert checkpoint is not None
            path = await archive_and_prune(
                engine, store, archive_dir(demo_env.settings.var_dir), through_seq=checkpoint.seq
            )
            assert path is not None
            return path.name
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:  # the sync Playwright API keeps an event loop running in this one
        return pool.submit(lambda: asyncio.run(go())).result()


def test_officer_finds_pruned_events_in_the_archives(served: str, demo_env: DemoEnv, browser: Any) -> None:
    from playwright.sync_api import expect

    officer = make_user_threaded(demo_env, ["security_officer"])
    start = (datetime.now(CST) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=served, timeout=30) as http:  # more than a page (100) of them
        for i in range(103):
            r = http.post("/open/graphql", json={"query": OPEN}, headers={"X-Request-ID": f"{tag}-{i}"})
            assert r.status_code == 200, r.text
    name = _prune(demo_env)

    context = browser.new_context()
    try:
        page = context.new_page()
        browser_sign_in(page, served, *officer)
        page.wait_for_url(f"{served}/audit")
        page.fill("#filters input[name=from]", start)
        page.select_option("#filters select[name=tier]", "open")
        status, rows = page.locator("#status"), page.locator("#results tbody tr")

        # the live chain no longer holds them
        page.click("#search")
        expect(status).to_contain_text("共 0 条")
        expect(page.locator("#archive-note")).to_be_hidden()
        expect(page.locator("#results th.archive-col")).to_be_hidden()

        # the archives do: newest first, a page of 100, the file each came from, the archives read
        page.check("#source input[value=archived]")
        expect(page.locator("#archive-note")).to_be_visible()
        expect(page.locator("#archive-note")).to_contain_text("较慢")
        expect(page.locator("#export-csv")).to_be_disabled()
        page.click("#search")
        expect(status).to_have_text("归档中共 103 条 · 103 events match")
        expect(rows).to_have_count(100)
        expect(page.locator("#archives-read")).to_have_text(f"已读取归档 Archives read (1): {name}")
        expect(page.locator("#results th.archive-col")).to_be_visible()
        assert set(page.locator("#results tbody td.archive-col").all_inner_texts()) == {name}
        seqs = [int(s) for s in page.locator("#results tbody tr td:first-child").all_inner_texts()]
        assert seqs == sorted(seqs, reverse=True)

        # "More" pages on in the archives (before = the last seq shown)
        page.click("#more")
        expect(rows).to_have_count(103)
        expect(page.locator("#more")).to_be_hidden()
        expect(status).to_have_text("归档中共 103 条 · 103 events match")  # still the whole count
        seqs = [int(s) for s in page.locator("#results tbody tr td:first-child").all_inner_texts()]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 103

        # an archived event's detail is the row the archive holds (it is not in the live table)
        rows.last.click()
        expect(page.locator("#detail-seq")).to_contain_text(f"归档 archive {name}")
        expect(page.locator("#detail pre")).to_contain_text(f'"request_id": "{tag}-0"')

        # the same filters narrow the archive search: no department matches an anonymous request
        page.fill("#filters input[name=department]", "hrss")
        page.click("#search")
        expect(status).to_contain_text("共 0 条")
        expect(rows).to_have_count(0)

        # errors Chinese first, the server's words after
        page.fill("#filters input[name=status]", "abc")
        page.click("#search")
        expect(status).to_have_class(re.compile("error"))
        expect(status).to_contain_text("查询条件有误 · Archive search failed: status is an HTTP status code")

        # back to the live chain: the choice is cleared with the results, export is offered again
        page.check("#source input[value=live]")
        expect(rows).to_have_count(0)
        expect(page.locator("#archive-note")).to_be_hidden()
        expect(page.locator("#archives-read")).to_be_hidden()
        expect(page.locator("#export-csv")).to_be_enabled()
    finally:
        context.close()
