"""Shuqiao audit benchmark: chain appends/s (one caller vs many concurrent callers, which is what
group commit is for), and share-tier throughput with the audit chain on vs the log-only sink, in
the same run on the same database.

    .venv/bin/python bench/audit_bench.py [--backend sqlite|postgres|both] [--seconds 5]
                                          [--concurrency 32] [--rounds 3] [--json]
                                          [--wire [--connections 8]]

Appends: `ChainedAuditLog.record` on a freshly migrated database, durable commits
(SQLite synchronous=FULL; PostgreSQL synchronous_commit=on).
Share tier: the app in-process over httpx's ASGI transport (no sockets, so the client and the
gateway share one core: the figure is the gateway's cost per request, not a wire benchmark);
hrss reading `population(first: 20) { name birthDate }` with its grant, `--concurrency` requests
in flight, `--rounds` alternating log/chain rounds (drift such as cache warm-up or autovacuum
hits both), medians reported. Target: audit chain costs ≤ 10% of share-tier throughput vs the
log-only sink.

--wire measures the share tier the way it is deployed instead: two gateway processes
(`uvicorn asgi:app`, one worker each) on the same demo database, one with the chain (alerts and
checkpoints on, the defaults), one with the log-only sink, loaded in turn by wrk with samr's
100-row page of enterprise registrations (the page case of bench/run_gateway_bench.py);
reported: each server's median req/s and CPU per request, and the cost as the median of the
rounds' chain/log ratios (each round loads both servers back to back, in alternating order, so
the machine's drift between rounds cancels) with their range.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a bare checkout too
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway.access_log import AccessEvent
from gateway.audit import ChainedAuditLog, verify_chain
from gateway.db import create_engine, upgrade
from tests.conftest import create_database, init_store, load_demo_env, settings_for

GATEWAY_CPU, LOAD_CPU = 0, 1  # --pin
ALL_CPUS = os.sched_getaffinity(0)
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


def median_interval(values: list[float], level: float = 0.95, resamples: int = 2000) -> tuple[float, float]:
    """Bootstrap interval of the median (fixed seed: the same rounds give the same interval)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = int(resamples * (1 - level) / 2)
    return medians[tail], medians[-tail - 1]


def tree_cpu(pid: int) -> float:
    """CPU seconds of a server and its child processes (SQLite's audit writer runs in one)."""
    from run_gateway_bench import cpu_seconds

    from tests.support import child_pids

    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in child_pids(pid))


def wire_share_tier(
    settings: Any, seconds: float, rounds: int, connections: int, chain_env: dict[str, str], pin: bool = False
) -> dict[str, Any]:
    """Two gateway processes on one database, audit chain vs log-only, loaded in turn by wrk.
    `pin`: each gateway on CPU 0, wrk and PostgreSQL's backends for the database on CPU 1."""
    from types import SimpleNamespace

    import httpx
    from run_gateway_bench import (
        PAGE_SIZE,
        QUERIES,
        REPO,
        VENV_BIN,
        Case,
        Processes,
        postgres_cpu,
        postgres_cpu_delta,
        run_wrk,
        shuqiao_token,
        wait_ready,
        write_lua,
    )

    from tests.support import free_port

    creds = json.loads((settings.var_dir / "demo-credentials.json").read_text())
    wrk_args = SimpleNamespace(wrk="wrk", connections=connections)
    procs, cases = Processes(), {}
    body = json.dumps({"query": QUERIES["shuqiao"][0]})
    try:
        for store in ("log", "chain"):
            port = free_port()
            env = {
                **os.environ,
                "SHUQIAO_DATABASE_URL": settings.database_url,
                "SHUQIAO_VAR_DIR": str(settings.var_dir),
                "SHUQIAO_ISSUER": "http://shuqiao-bench",
                "SHUQIAO_AUDIT_STORE": store,
                **(chain_env if store == "chain" else {}),
            }
            log_file = settings.var_dir / f"wire-{store}.log"
            cmd = [
                *(["taskset", "-c", str(GATEWAY_CPU)] if pin else []),
                str(VENV_BIN / "uvicorn"),
                "asgi:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
            proc = procs.start(cmd, log_file=log_file, env=env, cwd=REPO)
            url = f"http://127.0.0.1:{port}/share/graphql"
            wait_ready(proc, url, log_file)
            headers = {"Authorization": f"Bearer {shuqiao_token(url.rsplit('/', 2)[0], creds, 'samr')}"}
            case = Case(f"shuqiao-{store}", "shuqiao", "page", proc.pid, url, headers, [body])
            case.script = write_lua(case, settings.var_dir)
            rows = QUERIES["shuqiao"][2](
                httpx.post(
                    url, content=body, headers={**headers, "Content-Type": "application/json"}, timeout=10
                ).json()["data"]
            )
            assert len(rows) == PAGE_SIZE, rows
            run_wrk(wrk_args, case, 2)  # warm-up
            cases[store] = case
        rates: dict[str, list[float]] = {"log": [], "chain": []}
        cpu: dict[str, list[float]] = {"log": [], "chain": []}
        db_cpu: dict[str, list[float]] = {"log": [], "chain": []}
        database = settings.database_url.rsplit("/", 1)[1] if "postgresql" in settings.database_url else None
        if pin:
            # wrk is our child; the backends exist by now (fixed pools: no new ones during the load)
            pinned = [0, *(postgres_cpu(database) if database else {})]
            for pid in pinned:
                os.sched_setaffinity(pid, {LOAD_CPU})
        for i in range(rounds):
            # Alternate which server goes first, so drift within a round (the machine's speed
            # changes by ±25% over minutes here) does not always favour the same one.
            for store in ("log", "chain") if i % 2 == 0 else ("chain", "log"):
                case = cases[store]
                before, db_before = tree_cpu(case.pid), postgres_cpu(database) if database else {}
                stats, _quantiles = run_wrk(wrk_args, case, seconds)
                n = max(stats["requests"], 1)
                rates[store].append(stats["requests"] / (stats["duration_us"] / 1e6))
                cpu[store].append(1000 * (tree_cpu(case.pid) - before) / n)
                if database:
                    db_cpu[store].append(1000 * postgres_cpu_delta(db_before, postgres_cpu(database)) / n)
    finally:
        procs.stop_all()
        if pin:
            for pid in pinned:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(pid, ALL_CPUS)
    log_rps, chain_rps = statistics.median(rates["log"]), statistics.median(rates["chain"])
    # Each round measures both servers back to back: the median of the per-round ratios cancels
    # the drift between rounds that a ratio of the two medians keeps.
    ratios = sorted(c / lg for c, lg in zip(rates["chain"], rates["log"], strict=True))
    ratio = statistics.median(ratios)
    low, high = median_interval(ratios)
    return {
        "log_req_per_s": round(log_rps, 1),
        "chain_req_per_s": round(chain_rps, 1),
        "chain_vs_log": round(ratio, 3),
        "cost_pct": round(100 * (1 - ratio), 1),
        "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
        # 95% bootstrap interval of the median ratio, as cost: what one run can resolve
        "cost_pct_interval": [round(100 * (1 - high), 1), round(100 * (1 - low), 1)],
        "cpu_ms_per_req": {k: round(statistics.median(v), 2) for k, v in cpu.items()},
        # PostgreSQL's backends for this database (the WAL writer and checkpointer not included)
        "db_cpu_ms_per_req": {k: round(statistics.median(v), 2) for k, v in db_cpu.items() if v},
        "connections": connections,
        "pinned": pin,
        "runs": {k: [round(x, 1) for x in v] for k, v in rates.items()},
    }


def run_backend(
    backend: str,
    seconds: float,
    concurrency: int,
    rounds: int,
    wire: int = 0,
    chain_env: dict[str, str] | None = None,
    pin: bool = False,
) -> dict[str, Any]:
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
            if wire:
                out["share_tier"] = wire_share_tier(settings, seconds, rounds, wire, chain_env or {}, pin)
                return out
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
    ap.add_argument("--wire", action="store_true", help="share tier: two gateway processes under wrk")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections (--wire)")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="--wire: each gateway on CPU 0, wrk and the database's PostgreSQL backends on CPU 1",
    )
    ap.add_argument(
        "--chain-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the chain server (--wire), e.g. SHUQIAO_AUDIT_ALERTS=0",
    )
    args = ap.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    wire = args.connections if args.wire else 0
    chain_env = dict(kv.split("=", 1) for kv in args.chain_env)
    results = [
        run_backend(b, args.seconds, args.concurrency, args.rounds, wire, chain_env, args.pin)
        for b in backends
    ]
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
        if "connections" in s:
            print(
                f"[{r['backend']}] share tier (wire, wrk -c{s['connections']}"
                f"{', pinned' if s['pinned'] else ''}) req/s: audit log-only "
                f"{s['log_req_per_s']:.0f}, audit chain {s['chain_req_per_s']:.0f} (medians of {s['runs']}) "
                f"→ chain/log {s['chain_vs_log']:.3f}, median of the rounds' ratios (range "
                f"{s['ratio_range'][0]:.3f}–{s['ratio_range'][1]:.3f}; cost {s['cost_pct']}%, 95% interval "
                f"{s['cost_pct_interval'][0]}% to {s['cost_pct_interval'][1]}%); "
                f"server CPU ms/request "
                f"log {s['cpu_ms_per_req']['log']}, chain {s['cpu_ms_per_req']['chain']}"
                + (
                    f"; PostgreSQL backends CPU ms/request log {s['db_cpu_ms_per_req']['log']}, "
                    f"chain {s['db_cpu_ms_per_req']['chain']}"
                    if s["db_cpu_ms_per_req"]
                    else ""
                )
            )
            continue
        print(
            f"[{r['backend']}] share tier req/s at concurrency {s['concurrency']}: "
            f"audit log-only {s['log_req_per_s']:.0f}, audit chain {s['chain_req_per_s']:.0f} "
            f"(medians of {s['runs']}) → chain/log {s['chain_vs_log']:.3f} (cost {s['cost_pct']}%)"
        )


if __name__ == "__main__":
    main()
