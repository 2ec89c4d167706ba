"""`GET /metrics`: what it counts, who may read it, and that it names no one and no value; on
SQLite and PostgreSQL, and with several worker processes (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.request_log import UNMATCHED, route_templates
from tests.conftest import gql
from tests.support import ROOT, free_port

LOCAL = ("127.0.0.1", 40000)
VALUE = "雁塔区METRIC-VALUE-61f0"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scrape: dict[Any, float], name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def local(demo_env: Any) -> Iterator[TestClient]:
    """The gateway as a client on the same host sees it (the default allow-list)."""
    with TestClient(create_app(demo_env.settings), client=LOCAL) as c:
        yield c


def scrape(client: TestClient) -> dict[Any, float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


def test_requests_are_counted_by_tier_route_status_and_code(
    local: TestClient, tokens: dict[str, str]
) -> None:
    before = scrape(local)
    query = "{ enterpriseRegistration(first: 2) { totalCount } }"
    assert gql(local, "open", query).status_code == 200
    assert gql(local, "open", query).status_code == 200  # the same request again: a plan-cache hit
    by_first = "query($n: Int) { enterpriseRegistration(first: $n) { totalCount } }"
    assert gql(local, "open", by_first, variables={"n": 1}).status_code == 200
    # the same text with other variables: a new plan from the cached document
    assert gql(local, "open", by_first, variables={"n": 3}).status_code == 200
    assert gql(local, "share", "{ population { totalCount } }").status_code == 401
    sdl = local.get("/share/subgraphs/hrss.graphql", headers={"Authorization": f"Bearer {tokens['hrss']}"})
    assert sdl.status_code == 200
    assert local.get("/no/such/path-5e1a").status_code == 404
    after = scrape(local)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    total = "shuqiao_http_requests_total"
    assert delta(total, tier="open", route="/open/graphql", status="200", code="") == 4
    assert delta(total, tier="share", route="/share/graphql", status="401", code="UNAUTHENTICATED") == 1
    assert (
        delta(total, tier="share", route="/share/subgraphs/{department}.graphql", status="200", code="") == 1
    )
    assert delta(total, tier="other", route="(unmatched)", status="404", code="NOT_FOUND") == 1
    assert delta("shuqiao_http_request_duration_seconds_count", tier="open") == 4
    assert delta("shuqiao_http_request_duration_seconds_count", tier="share") == 2
    # every GraphQL answer waited for its audit event; batches were committed
    assert delta("shuqiao_audit_append_seconds_count") >= 3
    assert delta("shuqiao_audit_commit_seconds_count") >= 1
    assert delta("shuqiao_audit_batch_events_sum") >= 3
    assert delta("shuqiao_response_signing_seconds_count") >= 1  # the share tier's 401 is signed
    cache = "shuqiao_query_cache_requests_total"
    assert delta(cache, cache="document", result="hit") >= 1
    assert delta(cache, cache="plan", result="hit") >= 1
    assert delta(cache, cache="plan", result="miss") >= 2


def test_pool_use_is_read_from_the_pool(local: TestClient, demo_env: Any) -> None:
    engine = local.app.state.gateway.engine  # type: ignore[attr-defined]
    before = scrape(local)
    assert value(before, "shuqiao_db_pool_size") >= demo_env.settings.db_pool_size

    async def hold() -> Any:
        return await engine.connect()

    # The app's background tasks (index, checkpoints, alerts) take connections too, briefly: a
    # pair of scrapes can straddle one of theirs. Holding one connection must show as exactly one
    # more checked out in some attempt (bounded), and the gauge must come back when it is released.
    steps = []
    for _ in range(20):
        conn = local.portal.call(hold)  # type: ignore[union-attr]
        try:
            held = value(scrape(local), "shuqiao_db_pool_checked_out")
        finally:
            local.portal.call(conn.close)  # type: ignore[union-attr]
        released = value(scrape(local), "shuqiao_db_pool_checked_out")
        steps.append(held - released)
        if held - released == 1:
            break
    assert steps[-1] == 1, steps


def test_metrics_name_no_principal_token_key_or_value(
    local: TestClient, demo_env: Any, tokens: dict[str, str]
) -> None:
    def route_labels(text: str) -> set[str]:
        families = text_string_to_metric_families(text)
        return {s.labels["route"] for f in families for s in f.samples if "route" in s.labels}

    # The registry is the process's: other modules' apps (test-only routes) may have labels already.
    earlier = route_labels(local.get("/metrics").text)
    key = demo_env.credentials["api_keys"]["demo-bank"]
    q = "query($d: String) { enterpriseRegistration(first: 1, where: {district: {eq: $d}}) { totalCount } }"
    gql(local, "open", q, variables={"d": VALUE}, headers={"X-API-Key": key})
    gql(local, "share", "{ population(first: 1) { totalCount } }", token=tokens["hrss"])
    local.get(f"/share/subgraphs/{VALUE}.graphql")
    text = local.get("/metrics").text
    forbidden = [key, key.split("_")[1], tokens["hrss"], VALUE, "hrss", "demo-bank"]
    forbidden += [c["client_id"] for c in demo_env.credentials["clients"].values()]
    for secret in forbidden:
        assert secret not in text
    routes = route_labels(text)
    templates = set(route_templates(local.app.routes).values())  # type: ignore[attr-defined]
    assert "/share/subgraphs/{department}.graphql" in routes
    assert routes - earlier <= templates | {UNMATCHED}


def test_metrics_only_for_the_allow_list(client: Any, local: TestClient, demo_env: Any) -> None:
    far = client.get("/metrics")  # the session client's address is not on the list
    assert far.status_code == 403 and far.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    proxied = local.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert proxied.status_code == 403  # through a proxy: refused whoever the peer is
    wide = TestClient(
        create_app(demo_env.settings.with_(metrics_allow=("10.0.0.0/8",))), client=("10.1.2.3", 1)
    )
    assert wide.get("/metrics").status_code == 200
    off = TestClient(create_app(demo_env.settings.with_(metrics=False)), client=LOCAL)
    assert off.get("/metrics").status_code == 404


@pytest.mark.parametrize("demo_env", ["sqlite"], indirect=True)
def test_several_workers_report_together(demo_env: Any, tmp_path: Path) -> None:
    """`shuqiao serve --workers 2` with PROMETHEUS_MULTIPROC_DIR: whichever worker answers the
    scrape, it counts every worker's requests; the issuer follows --port."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    s = demo_env.settings
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    (mp_dir / "counter_0.db").write_bytes(b"stale")  # a previous run's file: removed by serve
    env = {k: v for k, v in os.environ.items() if k != "SHUQIAO_ISSUER"}
    env.update(
        SHUQIAO_DATABASE_URL=s.database_url,
        SHUQIAO_VAR_DIR=str(s.var_dir),
        SHUQIAO_MASTER_KEY_FILE=str(s.master_key_file),
        PROMETHEUS_MULTIPROC_DIR=str(mp_dir),
        PYTHONPATH=str(ROOT),
    )
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            proc.terminate()
            pytest.fail(proc.communicate(timeout=10)[0].decode(errors="replace")[-3000:])
        # /readyz answers once one worker is up; the other may still be starting. Wait (bounded)
        # until the scrape shows both workers' pools.
        for _ in range(100):
            scraped = samples(httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text)
            if value(scraped, "shuqiao_db_pool_size") == 2 * s.db_pool_size:
                break
            time.sleep(0.1)
        n = 12
        with httpx.Client(base_url=base) as http:  # a new connection each: spread over the workers
            for _ in range(n):
                assert http.get("/healthz", headers={"Connection": "close"}).status_code == 200
            issuer = http.get("/.well-known/openid-configuration").json()["issuer"]
            counts, pools = [], []
            for _ in range(4):
                scraped = samples(http.get("/metrics", headers={"Connection": "close"}).text)
                pools.append(value(scraped, "shuqiao_db_pool_size"))
                counts.append(
                    value(
                        scraped,
                        "shuqiao_http_requests_total",
                        tier="ops",
                        route="/healthz",
                        status="200",
                        code="",
                    )
                )
        assert issuer == base
        assert counts == [n] * 4, counts
        assert pools == [2 * s.db_pool_size] * 4, pools  # both workers' pools, whoever answers
        assert not (mp_dir / "counter_0.db").exists() and list(mp_dir.glob("counter_*.db"))
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=15)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert sum(1 for x in lines if x["route"] == "/healthz") == n  # the access log reaches stdout
