"""The cost of the router: the same queries through federation/router.mjs (@apollo/gateway)
and straight to the node's share tier, one run, ratios printed.

Cases (samr's token; samr reads its own rows in clear):

- lookup: one enterprise by credit code (a variable, rotated over 200 real codes), 10 fields;
- page:   the first 100 enterprises, 10 fields;
- join:   legalEntity(creditCode:) with samr + tax + eco fields (three subgraph fetches through
          the router, one request on the share tier).

One node process (uvicorn, 1 worker, SQLite demo store under --var) and one router process;
the load is a closed loop of --concurrency clients (httpx, asyncio) for --seconds per case and
target, after --warmup seconds. Every answer is checked against the share tier's once first.

    .venv/bin/python bench/federation_bench.py            # about a minute; needs Node 20 (make federation)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.federation import (  # noqa: E402
    Node,
    compose,
    node_env,
    serve_node,
    serve_router,
    subgraphs,
)

FIELDS = (
    "creditCode name legalRepresentative contactPhone registeredCapital establishmentDate "
    "enterpriseType industry district status"
)
LOOKUP = (
    "query($c: String!) { enterpriseRegistration(where: {creditCode: {eq: $c}}) "
    f"{{ edges {{ node {{ {FIELDS} }} }} }} }}"
)
PAGE = f"{{ enterpriseRegistration(first: 100) {{ edges {{ node {{ {FIELDS} }} }} }} }}"
JOIN = (
    "query($c: String!) { legalEntity(creditCode: $c) { creditCode "
    "enterpriseRegistration { name contactPhone } taxCreditRating { rating taxPaidAmount } "
    "dischargePermit { permitNumber validTo } } }"
)


async def load(
    url: str, token: str, bodies: list[dict[str, Any]], seconds: float, clients: int
) -> list[float]:
    """Closed loop: each client sends the next body as soon as its answer is in."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    deadline = time.perf_counter() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        n = i
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            r = await http.post(url, json=bodies[n % len(bodies)], headers=headers)
            if r.status_code != 200 or "errors" in r.json():
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
            latencies.append(time.perf_counter() - started)
            n += clients

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    return latencies


def figures(latencies: list[float], seconds: float) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100)
    return {
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p95_ms": round(q[94] * 1000, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--var", default="/tmp/shuqiao-federation-bench")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--port", type=int, default=8151)
    p.add_argument("--router-port", type=int, default=4151)
    args = p.parse_args()

    import subprocess

    var = Path(args.var)
    node_dir = var / "node"
    node_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    if not (node_dir / "demo-credentials.json").exists():
        subprocess.run(
            [sys.executable, "-c", "from gateway.cli import main; main()", "demo", "init"],
            env={**__import__("os").environ, **node_env(node_dir, base)},
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    creds = json.loads((node_dir / "demo-credentials.json").read_text())["clients"]["samr"]
    with ExitStack() as stack:
        serve_node(node_dir, args.port, stack)
        token = httpx.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(creds["client_id"], creds["client_secret"]),
            timeout=30,
        ).json()["access_token"]
        supergraph = var / "supergraph.graphql"
        result = compose(
            subgraphs([Node("node", base, ("samr", "tax", "eco", "hrss", "police"))], token), supergraph
        )
        assert not result["errors"], result["errors"]
        router = serve_router(supergraph, args.router_port, stack, var / "router.log", "--name", "bench")
        direct = f"{base}/share/graphql"
        headers = {"Authorization": f"Bearer {token}"}
        rated = httpx.post(
            direct,
            json={"query": "{ taxCreditRating(first: 100) { edges { node { creditCode } } } }"},
            headers=headers,
        ).json()["data"]["taxCreditRating"]["edges"]
        codes = [e["node"]["creditCode"] for e in rated]
        all_codes = httpx.post(
            direct,
            json={"query": "{ enterpriseRegistration(first: 100) { edges { node { creditCode } } } }"},
            headers=headers,
        ).json()["data"]["enterpriseRegistration"]["edges"]
        lookups = [{"query": LOOKUP, "variables": {"c": e["node"]["creditCode"]}} for e in all_codes]
        cases = {
            "lookup": lookups,
            "page": [{"query": PAGE}],
            "join": [{"query": JOIN, "variables": {"c": c}} for c in codes],
        }
        for name, bodies in cases.items():  # the same answers both ways, before any load
            a = httpx.post(direct, json=bodies[0], headers=headers).json()
            b = httpx.post(router, json=bodies[0], headers=headers).json()
            if a != b:
                raise RuntimeError(f"{name}: the router's answer differs from the share tier's")
        rows = []
        for name, bodies in cases.items():
            out = {}
            for target, url in (("direct", direct), ("router", router)):
                asyncio.run(load(url, token, bodies, args.warmup, args.concurrency))
                lat = asyncio.run(load(url, token, bodies, args.seconds, args.concurrency))
                out[target] = figures(lat, args.seconds)
            ratio = {
                "rps": round(out["router"]["rps"] / out["direct"]["rps"], 2),
                "p50": round(out["router"]["p50_ms"] / out["direct"]["p50_ms"], 2),
            }
            rows.append((name, out, ratio))
    print(f"{'case':8s} {'target':7s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for name, out, ratio in rows:
        for target in ("direct", "router"):
            f = out[target]
            print(f"{name:8s} {target:7s} {f['rps']:8.1f} {f['p50_ms']:8.2f} {f['p95_ms']:8.2f}")
        print(f"{name:8s} ratio   router/direct: req/s x{ratio['rps']}, p50 x{ratio['p50']}")
    print(f"(concurrency {args.concurrency}, {args.seconds} s per case and target, SQLite demo store)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
