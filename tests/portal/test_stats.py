"""Public statistics (gateway.portal.usage, .stats, .stats_http, .cli): the daily rollup counts
exactly the open tier's calls and completed downloads, once each; the page, its JSON twins and the
CLI show them for open datasets only, zero-filled, without anyone's identity; the page budget."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.portal.usage import (
    EVENTS,
    USAGE,
    Counts,
    _lock_cursor,
    roll_up_pending,
    tally,
    today_cst,
)
from tests.conftest import gql

T = TypeVar("T")
AIR = "{ airQualityDaily(first: 3) { edges { node { city } } } }"
BOTH = (
    "{ airQualityDaily(first: 1) { totalCount } "
    "enterpriseRegistration(first: 2) { edges { node { name } } } }"
)
TAX = "{ taxCreditRating(first: 2) { edges { node { rating } } } }"
POPULATION = "{ population(first: 1) { edges { node { name } } } }"
CLOSED = ["population", "social_insurance", "人口基础信息", "社保参保缴费"]


def _db(demo_env: Any, job: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.db import create_engine

    async def go() -> T:
        engine = create_engine(demo_env.settings.database_url)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _roll_up(demo_env: Any) -> int:
    return _db(demo_env, roll_up_pending)


@pytest.fixture(scope="module")
def app(demo_env: Any) -> Iterator[TestClient]:
    settings = dataclasses.replace(
        demo_env.settings, download_rate="1000/minute", explorer_rate="1000/minute"
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _usage(app: TestClient, code: str) -> dict[str, tuple[int, int]]:
    r = app.get(f"/stats/datasets/{code}.json", params={"days": 3})
    assert r.status_code == 200, r.text
    return {d["date"]: (d["calls"], d["downloads"]) for d in r.json()["days"]}


def _moved(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """How much the counts grew, day by day (a window that slid past midnight drops a day that
    gained nothing)."""
    calls = sum(c - before.get(d, (0, 0))[0] for d, (c, _) in after.items())
    downloads = sum(n - before.get(d, (0, 0))[1] for d, (_, n) in after.items())
    return calls, downloads


# ---------------------------------------------------------------- what counts (pure)


def test_tally_counts_reads_and_completed_downloads_only() -> None:
    at = datetime(2026, 12, 2, 17, 30, tzinfo=UTC)  # 01:30 on 12-03 in China
    read = json.dumps({"fields": [], "reads": [{"dataset": "air", "rows": 3}, {"dataset": "ent", "rows": 0}]})
    down = json.dumps({"reads": [{"dataset": "air", "rows": 10, "format": "csv"}]})
    events = [
        (at, None, 200, read),  # a call reading two datasets: one call each
        (at.replace(tzinfo=None), "Q", 200, read),  # naive UTC, as SQLite hands it back
        (at, "download.start", 200, json.dumps({"fields": [{"dataset": "air"}], "reads": []})),
        (at, "download.end", 200, down),
        (at, "download.end", 499, down),  # aborted: not a download
        (at, "download", 404, "{}"),
        (at, "explorer.catalogue", 200, "{}"),  # reads nothing
        (at, None, 403, read),  # refused
        (at, None, 200, "not json"),  # an edited row: left out
        (at, None, 200, json.dumps({"reads": [{"identity": {"x": 1}}]})),  # no dataset
    ]
    day = date(2026, 12, 3)
    assert tally(events) == {("air", day): Counts(2, 1), ("ent", day): Counts(2, 0)}


# ---------------------------------------------------------------- through the gateway


def test_calls_and_downloads_move_the_counts_by_exactly_that(
    app: TestClient, demo_env: Any, tokens: Any
) -> None:
    _roll_up(demo_env)
    before = {
        code: _usage(app, code)
        for code in ("air_quality_daily", "enterprise_registration", "tax_credit_rating")
    }
    key = demo_env.credentials["api_keys"]["demo-bank"]

    for _ in range(3):
        assert "errors" not in gql(app, "open", AIR).json()
    assert "errors" not in gql(app, "open", BOTH).json()
    assert "errors" not in app.post("/explore/api/graphql", json={"query": AIR}).json()  # the page's preview
    assert "errors" not in gql(app, "open", TAX, headers={"X-API-Key": key}).json()  # an enterprise
    assert (
        gql(app, "open", TAX).json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    )  # refused: not a call
    assert gql(app, "share", BOTH, token=tokens["hrss"]).status_code == 200  # the share tier is not counted
    assert "errors" not in gql(app, "share", POPULATION, token=tokens["hrss"]).json()
    for _ in range(2):
        assert app.get("/open/download/air_quality_daily.csv").status_code == 200
    assert app.get("/open/download/air_quality_daily.jsonl", params={"limit": 5}).status_code == 200
    assert app.get("/open/download/population.csv").status_code == 404
    assert app.get("/open/download/tax_credit_rating.csv").status_code == 403
    assert app.get("/open/download/air_quality_daily.txt").status_code == 404

    assert _roll_up(demo_env) > 0
    after = {code: _usage(app, code) for code in before}
    assert _moved(before["air_quality_daily"], after["air_quality_daily"]) == (5, 3)
    assert _moved(before["enterprise_registration"], after["enterprise_registration"]) == (1, 0)
    assert _moved(before["tax_credit_rating"], after["tax_credit_rating"]) == (1, 0)

    # the page's JSON twin agrees with the per-dataset documents
    doc = app.get("/stats.json", params={"days": 3}).json()
    rows = {d["dataset"]: d for d in doc["datasets"]}
    for code, days in after.items():
        assert (rows[code]["calls"], rows[code]["downloads"]) == tuple(
            map(sum, zip(*days.values(), strict=True))
        )
    assert doc["totals"]["calls"] == sum(d["calls"] for d in doc["datasets"])
    assert doc["top"]["calls"][0]["calls"] == max(d["calls"] for d in doc["datasets"])
    assert [p["date"] for p in doc["daily"]] == list(after["air_quality_daily"])
    every = [_usage(app, code) for code in rows]  # the daily totals are the listed datasets' sums
    for p in doc["daily"]:
        assert (p["calls"], p["downloads"]) == tuple(
            map(sum, zip(*(u[p["date"]] for u in every), strict=True))
        )


def _table_and_reference(
    demo_env: Any,
) -> tuple[dict[tuple[str, date], Counts], dict[tuple[str, date], Counts]]:
    """The rollup table, and the counts of every open-tier event through its cursor tallied from the
    audit table directly — read under the cursor's lock, so no rollup moves either meanwhile."""

    async def job(engine: Any) -> tuple[dict[tuple[str, date], Counts], dict[tuple[str, date], Counts]]:
        sqlite = engine.dialect.name == "sqlite"
        async with engine.begin() as conn:
            through = await _lock_cursor(conn, sqlite)
            table = {
                (ds, day if isinstance(day, date) else date.fromisoformat(day)): Counts(c, d)
                for ds, day, c, d in (
                    await conn.execute(select(USAGE.c.dataset, USAGE.c.day, USAGE.c.calls, USAGE.c.downloads))
                )
            }
            events = await conn.execute(
                select(EVENTS.c.occurred_at, EVENTS.c.operation_name, EVENTS.c.status, EVENTS.c.detail).where(
                    EVENTS.c.seq <= through, EVENTS.c.tier == "open"
                )
            )
            return table, tally(events)

    return _db(demo_env, job)


def test_the_rollup_is_exact_idempotent_and_safe_to_run_concurrently(app: TestClient, demo_env: Any) -> None:
    for _ in range(4):
        gql(app, "open", AIR)
    _roll_up(demo_env)
    table, reference = _table_and_reference(demo_env)
    assert table == reference and reference  # every event once, none twice, none missed

    assert _roll_up(demo_env) == 0  # caught up: a second run changes nothing
    assert _table_and_reference(demo_env)[0] == table

    for _ in range(5):
        gql(app, "open", BOTH)
        app.get("/open/download/air_quality_daily.json", params={"limit": 2})

    async def twice(engine: Any) -> list[int]:
        return list(await asyncio.gather(roll_up_pending(engine, chunk=3), roll_up_pending(engine, chunk=3)))

    _db(demo_env, twice)  # two workers at once, in small chunks
    table, reference = _table_and_reference(demo_env)
    assert table == reference


def test_a_failed_chunk_counts_nothing_and_the_next_run_counts_it_once(
    app: TestClient, demo_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.portal import usage

    _roll_up(demo_env)
    before = _table_and_reference(demo_env)[0]
    gql(app, "open", AIR)
    gql(app, "open", AIR)

    real = usage._add

    async def broken(conn: Any, sqlite: bool, counts: Any) -> None:
        await real(conn, sqlite, counts)
        raise OSError("crash after adding the counts, before moving the cursor")

    monkeypatch.setattr(usage, "_add", broken)
    # (the app's own rollup task may have counted the two calls already; then there is nothing to fail)
    with contextlib.suppress(OSError):
        _roll_up(demo_env)
    monkeypatch.setattr(usage, "_add", real)
    table, reference = _table_and_reference(demo_env)
    assert table == reference  # the failed chunk rolled back whole (or the task had counted it)
    _roll_up(demo_env)
    table, reference = _table_and_reference(demo_env)
    assert table == reference and table != before


def test_days_are_zero_filled_and_bounded_and_closed_datasets_do_not_exist(app: TestClient) -> None:
    r = app.get("/stats/datasets/air_quality_daily.json", params={"days": 90})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert list(doc) == ["dataset", "days"] and doc["dataset"] == "air_quality_daily"
    days = doc["days"]
    today = today_cst()
    assert [d["date"] for d in days] == [(today - timedelta(days=89 - i)).isoformat() for i in range(90)]
    assert all(list(d) == ["date", "calls", "downloads"] for d in days)
    assert all(isinstance(d["calls"], int) and isinstance(d["downloads"], int) for d in days)
    assert sum(1 for d in days if d["calls"] == 0 and d["downloads"] == 0) >= 88  # the demo is a day old
    assert len(app.get("/stats/datasets/air_quality_daily.json").json()["days"]) == 30  # the default

    for bad in ("0", "367", "abc", "-1", "7.5"):
        r = app.get("/stats/datasets/air_quality_daily.json", params={"days": bad})
        assert r.status_code == 400 and r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert app.get("/stats.json", params={"days": bad}).status_code == 400
    unknown = app.get("/stats/datasets/nope.json")
    for code in ("population", "social_insurance"):
        r = app.get(f"/stats/datasets/{code}.json")
        assert r.status_code == 404 and r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert (
            r.json()["errors"][0]["message"].replace(code, "nope") == unknown.json()["errors"][0]["message"]
        )
        page = app.get("/stats", params={"dataset": code})
        assert page.status_code == 404 and "没有这个开放数据集" in page.text


def test_nothing_about_closed_datasets_or_anyone_using_them(
    app: TestClient, demo_env: Any, tokens: Any
) -> None:
    gql(app, "share", POPULATION, token=tokens["hrss"])
    gql(app, "open", TAX, headers={"X-API-Key": demo_env.credentials["api_keys"]["demo-bank"]})
    _roll_up(demo_env)
    table, _ = _table_and_reference(demo_env)
    assert not {ds for ds, _ in table} & set(CLOSED)  # the share tier's reads are never counted
    creds = demo_env.credentials
    secrets_ = [
        "demo-bank",
        "示例银行",
        creds["api_keys"]["demo-bank"][:12],
        *(c["client_id"] for c in creds["clients"].values()),
        "演示系统",
        "testclient",
        "127.0.0.1",
    ]
    for path in ("/stats", "/stats.json?days=90", "/stats?days=7&dataset=tax_credit_rating"):
        body = app.get(path).text
        for word in [*CLOSED, *secrets_]:
            assert word not in body, (path, word)
    for code in ("tax_credit_rating", "air_quality_daily"):
        body = app.get(f"/stats/datasets/{code}.json").text
        for word in [*CLOSED, *secrets_]:
            assert word not in body


def test_the_page_is_chinese_first_without_script_and_has_its_tables(app: TestClient) -> None:
    r = app.get("/stats", params={"days": 7})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp
    html = r.text
    assert '<html lang="zh-CN">' in html and "<script" not in html and " style=" not in html
    assert "开放数据使用统计" in html and "空气质量日报" in html and "企业登记信息" in html
    assert 'href="/stats?days=7" aria-current="page"' in html
    assert html.count('role="img"') == 2 and html.count("<details>") == 2  # each chart has a table
    assert 'id="datasets"' in html and 'id="growth"' in html
    one = app.get("/stats", params={"days": 30, "dataset": "air_quality_daily"})
    assert one.status_code == 200 and 'id="h-dataset"' in one.text
    assert 'href="/stats/datasets/air_quality_daily.json?days=30"' in one.text
    css = app.get("/stats/static/stats.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert app.get("/stats", params={"days": "x"}).status_code == 400


def test_catalogue_growth_counts_the_open_listing_by_first_published_month(app: TestClient) -> None:
    doc = app.get("/stats.json").json()
    cat = doc["catalogue"]
    listed = {d["dataset"] for d in doc["datasets"]}
    assert cat["open_datasets"] == len(listed) == cat["unconditional"] + cat["conditional"]
    assert "tax_credit_rating" in listed and not listed & set(CLOSED)
    assert cat["growth"] and cat["growth"][-1]["total"] == len(listed)
    assert sum(p["added"] for p in cat["growth"]) == len(listed)


def test_pages_use_the_portal_budget_not_the_api_allowance(demo_env: Any) -> None:
    settings = dataclasses.replace(demo_env.settings, explorer_rate="3/minute", anonymous_rate="1000/minute")
    with TestClient(create_app(settings)) as c:
        c.headers["X-Forwarded-For"] = "203.0.113.77"  # ignored (no trusted proxy); one address anyway
        answers = [c.get(p) for p in ("/stats", "/stats.json", "/stats/datasets/air_quality_daily.json")]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert "ratelimit" in {h.lower() for h in answers[0].headers}
        page = c.get("/stats")
        assert page.status_code == 429 and "访问过于频繁" in page.text and "retry-after" in page.headers
        js = c.get("/stats.json")
        assert js.status_code == 429 and js.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert "errors" not in gql(c, "open", AIR).json()  # the API allowance is untouched


def test_cli_prints_the_same_documents(app: TestClient, demo_env: Any) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app as cli

    s = demo_env.settings
    env = {
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
    }
    gql(app, "open", AIR)  # not rolled up yet: the command rolls up first
    result = CliRunner().invoke(cli, ["portal", "stats", "--days", "7", "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    served = app.get("/stats.json", params={"days": 7}).json()
    assert doc["datasets"] == served["datasets"] and doc["daily"] == served["daily"]

    result = CliRunner().invoke(cli, ["portal", "stats", "--dataset", "air_quality_daily", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == app.get("/stats/datasets/air_quality_daily.json").json()
    human = CliRunner().invoke(cli, ["portal", "stats", "--days", "7"], env=env)
    assert human.exit_code == 0 and "air_quality_daily" in human.output

    refused = CliRunner().invoke(cli, ["portal", "stats", "--dataset", "population", "--json"], env=env)
    assert refused.exit_code == 2 and "no open dataset" in refused.output
    assert CliRunner().invoke(cli, ["portal", "stats", "--days", "0"], env=env).exit_code == 2
