"""Shuqiao audit benchmark: chain appends/s (one caller vs many concurrent callers, which is what
group commit is for), and share-tier throughput with the audit chain on vs the log-only sink, in
the same run on the same database.

    .venv/bin/python bench/audit_bench.py [--backend sqlite|postgres|both] [--seconds 5]
                                          [--concurrency 32] [--rounds 3] [--json]

Appends: `ChainedAuditLog.record` on a freshly migrated database, durable commits
(SQLite synchronous=FULL; PostgreSQL synchronous_commit=on).
Share tier: the app in-process over httpx's ASGI transport (no sockets, so the client and the
gateway share one core: the figure is the gateway's cost per request, not a wire benchmark);
hrss reading `population(first: 20) { name birthDate }` with its grant, `--concurrency` requests
in flight, `--rounds` alternating log/chain rounds (drift such as cache warm-up or autovacuum
hits both), medians reported. Target: audit chain costs ≤ 10% of share-tier throughput vs the
log-only sink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a bare checkout too

from gateway.access_log import AccessEvent
from gateway.audit import ChainedAuditLog, verify_chain
from gateway.db import create_engine, upgrade
from tests.conftest import create_database, init_store, load_demo_env, settings_for

QUERY = "{ population(first: 20) { edges { node { name birthDate } } } }"


def event(i: int) -> AccessEvent:
    return AccessEvent(
        request_id=f"bench-{i}",
        tier="share",
        principal_kind="department",
        principal_id="hrss-bench",
        consumer="hrss",
        client_address="10.0.0.1",
        operation_name=None,
        operation_type="query",
        query_digest=f"{i:064x}",
        status=200,
        error_codes=[],
        latency_ms=1.5,
        fields=[{"dataset": "population", "field": "name", "action": "allow", "reason": "", "grant_id": 1}],
        reads=[{"dataset": "population", "rows": 20, "grant_id": 1, "purpose": "社保待遇资格认证"}],
    )


async def appends(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        log = ChainedAuditLog(engine)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            await log.record(event(n))
            n += 1
        single = n / (time.perf_counter() - start)

        log2 = ChainedAuditLog(engine)
        done, stop = 0, time.perf_counter() + seconds

        async def caller(k: int) -> None:
            nonlocal done
            i = 0
            while time.perf_counter() < stop:
                await log2.record(event(10_000_000 * (k + 1) + i))
                i += 1
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(concurrency)))
        concurrent = done / (time.perf_counter() - start)
        report = await verify_chain(engine)
        assert report.ok, report
        return {
            "single_per_s": round(single, 1),
            "concurrent_per_s": round(concurrent, 1),
            "concurrency": concurrency,
            "batches": log2.batches,
            "mean_batch": round(done / max(log2.batches, 1), 1),
            "chain_verified": report.events_checked,
        }
    finally:
        await engine.dispose()


async def share_tier(settings: Any, creds: dict[str, Any], seconds: float, concurrency: int) -> float:
    import httpx

    from gateway.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            hrss = creds["clients"]["hrss"]
            r = await c.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(hrss["client_id"], hrss["client_secret"]),
            )
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            body = {"query": QUERY}
            for _ in range(20):  # warm caches (schema, plan, token)
                assert (await c.post("/share/graphql", json=body, headers=headers)).status_code == 200
            done, stop = 0, time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    resp = await c.post("/share/graphql", json=body, headers=headers)
                    assert resp.status_code == 200, resp.text
                    done += 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return done / (time.perf_counter() - start)


def run_backend(backend: str, seconds: float, concurrency: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = create_database(backend, Path(tmp))
        try:
            upgrade(url)
            chain = asyncio.run(appends(url, seconds, concurrency))
            out: dict[str, Any] = {"backend": backend, "appends": chain}
        finally:
            drop()
        (Path(tmp) / "demo").mkdir()
        url, drop = create_database(backend, Path(tmp) / "demo")
        try:
            settings = settings_for(url, Path(tmp) / "var")
            init_store(settings)
            creds = load_demo_env(settings)
            rates: dict[str, list[float]] = {"log": [], "chain": []}
            for _ in range(rounds):  # alternate, so drift (cache warm-up, autovacuum) hits both
                for store in ("log", "chain"):
                    rates[store].append(
                        asyncio.run(
                            share_tier(replace(settings, audit_store=store), creds, seconds, concurrency)
                        )
                    )
            log_rps, chain_rps = statistics.median(rates["log"]), statistics.median(rates["chain"])
            out["share_tier"] = {
                "log_req_per_s": round(log_rps, 1),
                "chain_req_per_s": round(chain_rps, 1),
                "chain_vs_log": round(chain_rps / log_rps, 3),
                "cost_pct": round(100 * (1 - chain_rps / log_rps), 1),
                "concurrency": concurrency,
                "runs": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            }
        finally:
            drop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="alternating log/chain share-tier rounds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = [run_backend(b, args.seconds, args.concurrency, args.rounds) for b in backends]
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return
    for r in results:
        a, s = r["appends"], r["share_tier"]
        print(
            f"[{r['backend']}] chain appends/s: single caller {a['single_per_s']:.0f}, "
            f"{a['concurrency']} concurrent {a['concurrent_per_s']:.0f} "
            f"(×{a['concurrent_per_s'] / a['single_per_s']:.1f}, mean batch {a['mean_batch']}); "
            f"chain verified ({a['chain_verified']} events)"
        )
        print(
            f"[{r['backend']}] share tier req/s at concurrency {s['concurrency']}: "
            f"audit log-only {s['log_req_per_s']:.0f}, audit chain {s['chain_req_per_s']:.0f} "
            f"(medians of {s['runs']}) → chain/log {s['chain_vs_log']:.3f} (cost {s['cost_pct']}%)"
        )


if __name__ == "__main__":
    main()
