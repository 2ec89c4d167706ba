"""Lookups and pages at a province's scale (issue 18): the same requests against a small and a
large store, measured in the same run, with the large ÷ small ratios.

- small: `shuqiao demo init --size small` (5,000 people, 4,026 air-quality rows);
- large: `shuqiao demo init --size large` (1,000,000 people) and `air_quality_daily` grown to
  --rows rows (10,000,000 by default) in SQL: the demo's 11 cities over the same ten years,
  ~250 rows per city and day (as if from that many monitoring points; the dataset has no
  station column), values the pool's column types take, no protected (sealed) columns.

Cases, each one GraphQL POST on the share tier with hrss's token (hrss holds the demo grant on
`population`; `air_quality_daily` is unconditionally shared), one gateway process per database
(uvicorn, 1 worker), a closed loop of wrk -t1 -c4 with the variables rotated (wrk Lua from
run_gateway_bench):

- lookup:     `person(idNumber:) { population { name birthDate } }` over 500 real ID numbers
              (the key is stored SM4-sealed; the lookup goes through its HMAC-SM3 blind index);
- page:       `airQualityDaily(first: 100, where: {city: {eq: $city}, date: {lte: $day}},
              orderBy: [{field: DATE, direction: DESC}])`, 11 cities × 46 days = 506 variants;
- page+total: the same with `totalCount`.

Rounds alternate small/large per case. Then EXPLAIN (ANALYZE, BUFFERS) on the large database of
the SQL the gateway's own builder (resolvers.sql) makes for each case, with the plan PostgreSQL
would cache for the prepared statement (plan_cache_mode = force_generic_plan) beside it.

    .venv/bin/python bench/scale_bench.py                 # builds both databases (~4 min), measures (~4 min)
    .venv/bin/python bench/scale_bench.py --reuse         # both databases are there: measure only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_gateway_bench import (
    VENV_BIN,
    Case,
    Processes,
    measure_round,
    port_free,
    run_wrk,
    shuqiao_token,
    wait_ready,
    write_lua,
)

from catalogue.protection import blind_column
from gateway.demo.catalogue import AQI_CITIES
from gateway.demo.generate import AS_OF, DemoGenerator

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
PAGE = 100
LOOKUP_IDS = 500
PAGE_DAYS = 46  # × 11 cities = 506 page variants
AQ_FIRST_DAY = AS_OF - timedelta(days=3_652)  # the large demo's ten years

LOOKUP_Q = "query Person($id: String!) { person(idNumber: $id) { population { name birthDate } } }"
PAGE_Q = (
    "query Page($city: String!, $day: Date!) { airQualityDaily(first: %d, where: {city: {eq: $city},"
    " date: {lte: $day}}, orderBy: [{field: DATE, direction: DESC}]) {%s edges { node { city date aqi"
    " pm25 qualityLevel } } } }"
)
CASES = ("lookup", "page", "page+total")


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Store:
    size: str  # small | large
    url: str
    var_dir: Path
    port: int
    aq_rows: int  # air_quality_daily rows wanted (0: as the demo makes them)

    @property
    def db(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def env(self) -> dict[str, str]:
        env = {**os.environ, "SHUQIAO_DATABASE_URL": self.url, "SHUQIAO_VAR_DIR": str(self.var_dir)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return env

    def args(self, connections: int, wrk: str) -> argparse.Namespace:
        """What run_gateway_bench's measure_round and run_wrk read."""
        return argparse.Namespace(database_url=self.url, connections=connections, wrk=wrk)


# ---------------------------------------------------------------------------- setup


def setup(store: Store) -> float:
    """(Re)create the database, `shuqiao demo init` into it, grow air_quality_daily; seconds."""
    started = time.monotonic()
    log(f"(re)creating {store.db}")
    with psycopg.connect(store.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{store.db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{store.db}"')
    shutil.rmtree(store.var_dir, ignore_errors=True)
    t = time.monotonic()
    demo_init(store)
    log(f"  demo init took {time.monotonic() - t:.0f}s")
    if store.aq_rows:
        grow_air_quality(store)
    with psycopg.connect(store.url, autocommit=True) as conn:
        log(f"VACUUM ANALYZE {store.db}")
        conn.execute("VACUUM ANALYZE")
    (store.var_dir / "scale-bench").write_text(json.dumps({"size": store.size, "aq_rows": store.aq_rows}))
    return time.monotonic() - started


def demo_init(store: Store) -> None:
    """`shuqiao demo init` (idempotent: a store already loaded only gets new migrations)."""
    log(f"shuqiao demo init --size {store.size} (SHUQIAO_VAR_DIR={store.var_dir})")
    out = subprocess.run(
        [str(VENV_BIN / "shuqiao"), "demo", "init", "--size", store.size],
        cwd=REPO,
        env=store.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"demo init failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


GROW_SQL = """
INSERT INTO pool_air_quality_daily (city, date, aqi, pm25, pm10, o3_8h, primary_pollutant, quality_level)
SELECT (%(cities)s::text[])[1 + (i %% 11)::int], d, aqi, pm25, round(pm25 * (1.5 + random() * 0.6)),
       round(40 + random() * 130), CASE WHEN aqi > 50 THEN 'PM2.5' END,
       CASE WHEN aqi <= 50 THEN '优' WHEN aqi <= 100 THEN '良' WHEN aqi <= 150 THEN '轻度污染'
            WHEN aqi <= 200 THEN '中度污染' WHEN aqi <= 300 THEN '重度污染' ELSE '严重污染' END
FROM (
  SELECT i, %(first)s::date + (i * %(days)s::bigint / %(n)s)::int AS d,
         round(5 + 150 * random() * random())::float8 AS pm25
  FROM generate_series(0, %(n)s - 1) AS i
) g, LATERAL (SELECT least(500, ceil(pm25 * 1.4))::bigint AS aqi) a
"""


def grow_air_quality(store: Store) -> None:
    """air_quality_daily to store.aq_rows rows, in date order (as daily loads would append them):
    secondary indexes dropped first and built once at the end, as `shuqiao data load` does."""
    with psycopg.connect(store.url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM pool_air_quality_daily").fetchone()[0]
        n = store.aq_rows - have
        if n <= 0:
            return
        log(f"air_quality_daily: {have:,} → {store.aq_rows:,} rows (generate_series, {n:,} new)")
        t = time.monotonic()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'pool_air_quality_daily'"
            " AND indexname NOT LIKE '%%_pkey'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SELECT setseed(0.61)")
        # city: the (i mod 11)-th, so every day holds each city's share of the rows
        conn.execute(GROW_SQL, {"cities": list(AQI_CITIES), "first": AQ_FIRST_DAY, "days": 3_653, "n": n})
        log(f"  inserted in {time.monotonic() - t:.0f}s; building {len(indexes)} indexes")
        for _, ddl in indexes:
            conn.execute(ddl)
        # its size in the catalogue, as a load records it
        conn.execute(
            "UPDATE dataset_status SET row_count = %s WHERE dataset_code = 'air_quality_daily'",
            (store.aq_rows,),
        )
        log(f"  air_quality_daily ready in {time.monotonic() - t:.0f}s")


def reusable(store: Store) -> bool:
    marker = store.var_dir / "scale-bench"
    if not marker.exists():
        return False
    want = {"size": store.size, "aq_rows": store.aq_rows}
    if json.loads(marker.read_text()) != want:
        return False
    with contextlib.suppress(psycopg.Error), psycopg.connect(store.url) as conn:
        row = conn.execute("SELECT count(*) FROM pool_population").fetchone()
        return bool(row and row[0])
    return False


# ---------------------------------------------------------------------------- inputs


def id_numbers(size: str, n: int) -> list[str]:
    """n real ID numbers spread over the population, from the demo's own deterministic generator
    (the stored column is sealed)."""
    gen = DemoGenerator(size)
    gen.prepare("population")
    total = gen.count("population")
    step = max(1, total // n)
    out = [row[0] for i, row in enumerate(gen.rows("population")) if i % step == 0]
    return out[:n]


def page_variables() -> list[dict[str, str]]:
    """Every city, each up to one of PAGE_DAYS days of 2024 after 18 April (so that the small
    store, which holds 2024, has 100 rows before each)."""
    rnd = random.Random(18)
    days = sorted({AS_OF - timedelta(days=rnd.randrange(0, 260)) for _ in range(PAGE_DAYS * 3)})[:PAGE_DAYS]
    return [{"city": c, "day": d.isoformat()} for d in days for c in AQI_CITIES]


def bodies(case: str, ids: list[str], pages: list[dict[str, str]]) -> list[str]:
    if case == "lookup":
        return [json.dumps({"query": LOOKUP_Q, "variables": {"id": i}}) for i in ids]
    q = PAGE_Q % (PAGE, " totalCount" if case == "page+total" else "")
    return [json.dumps({"query": q, "variables": v}) for v in pages]


def check(c: Case, body: str) -> dict[str, Any]:
    r = httpx.post(c.url, content=body, headers={**c.headers, "Content-Type": "application/json"}, timeout=60)
    payload = r.json()
    if r.status_code != 200 or payload.get("errors"):
        raise RuntimeError(f"{c.target}/{c.case}: HTTP {r.status_code}: {r.text[:600]}")
    data = payload["data"]
    if c.case == "lookup":
        rows = (data["person"] or {}).get("population") or []
        if len(rows) != 1 or not rows[0]["name"]:
            raise RuntimeError(f"{c.target}/lookup: expected one person, got {rows}")
    else:
        page = data["airQualityDaily"]
        dates = [e["node"]["date"] for e in page["edges"]]
        want = json.loads(body)["variables"]
        if len(dates) != PAGE or dates != sorted(dates, reverse=True) or dates[0] > want["day"]:
            raise RuntimeError(f"{c.target}/{c.case}: bad page ({len(dates)} rows, {dates[:3]}…)")
        if any(e["node"]["city"] != want["city"] for e in page["edges"]):
            raise RuntimeError(f"{c.target}/{c.case}: a row of another city")
        if c.case == "page+total":
            data["total"] = page["totalCount"]
    c.response_bytes = len(r.content)
    return data


# ---------------------------------------------------------------------------- plans


def explain_cases(store: Store, ids: list[str], pages: list[dict[str, str]]) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the SQL resolvers.sql builds for each case (the gateway's own builder),
    with a real blind-index value and page variables, plus the generic plan PostgreSQL would
    cache for the prepared statement asyncpg runs."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    from gateway.demo.catalogue import DATASETS
    from policies.model import DatasetAccess
    from resolvers.plan import ConnectionPlan, EntityDatasetPlan, NodePlan
    from resolvers.sql import connection_statement, entity_statement

    specs = {d.code: d for d in DATASETS}
    dialect = PGDialect_asyncpg()  # the gateway's: $n parameters, as asyncpg prepares them
    out: dict[str, Any] = {}
    with psycopg.connect(store.url, autocommit=True) as conn:
        blind = conn.execute(
            f"SELECT {blind_column('id_number')} FROM pool_population ORDER BY _id OFFSET %s LIMIT 1",
            (123_457 if store.size == "large" else 1_234,),
        ).fetchone()[0]
        node = NodePlan(binding=None, type_name="Population", columns=["name", "birth_date"])  # type: ignore[arg-type]
        node.column(blind_column("id_number"))
        person = EntityDatasetPlan(
            specs["population"], 100, node, None, None, key_column=blind_column("id_number")
        )
        stmts = {"lookup": entity_statement(person, [blind])}
        v = pages[len(pages) // 2]
        for case in ("page", "page+total"):
            plan = ConnectionPlan(
                key="airQualityDaily",
                dataset=specs["air_quality_daily"],
                access=DatasetAccess(True, "", None),  # type: ignore[call-arg]
                first=PAGE,
                after=None,
                where=[("city", "eq", v["city"]), ("date", "lte", date.fromisoformat(v["day"]))],
                order=[("date", True)],
                want_total=case == "page+total",
                conn_entries=[],
                edge_entries=[],
                page_entries=[],
                node=NodePlan(
                    binding=None,  # type: ignore[arg-type]
                    type_name="AirQualityDaily",
                    columns=["city", "date", "aqi", "pm25", "quality_level"],
                ),
                node_key="node",
                type_names=("", "", ""),
            )
            stmts[case] = connection_statement(plan)[0]
        for case, stmt in stmts.items():
            compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
            params = compiled.construct_params()
            names = list(compiled.positiontup or [])
            values = [params[n] for n in names]
            conn.execute("DEALLOCATE ALL")
            conn.execute(f"PREPARE scale_q AS {compiled.string}")
            args = ", ".join(_literal(x) for x in values)
            conn.execute("SET plan_cache_mode = force_custom_plan")
            custom = _explain(conn, f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE scale_q({args})")
            conn.execute("SET plan_cache_mode = force_generic_plan")
            generic = _explain(conn, f"EXPLAIN EXECUTE scale_q({args})")
            conn.execute("RESET plan_cache_mode")
            out[case] = {
                "sql": compiled.string,
                "params": [str(x) for x in values],
                "plan": custom,
                "generic_plan": generic,
            }
    return out


def _literal(v: Any) -> str:
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "ARRAY[" + ", ".join(_literal(x) for x in v) + "]"
    return "'" + str(v).replace("'", "''") + "'"


def _explain(conn: psycopg.Connection[Any], sql: str) -> str:
    return "\n".join(r[0] for r in conn.execute(sql).fetchall())


# ---------------------------------------------------------------------------- main


def start_gateway(store: Store, procs: Processes, logs: Path) -> tuple[int, str]:
    if not port_free(store.port):
        raise RuntimeError(f"port {store.port} is in use")
    cmd = [str(VENV_BIN / "uvicorn"), "asgi:app", "--host", "127.0.0.1", "--port", str(store.port)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    log_file = logs / f"gateway-{store.size}.log"
    proc = procs.start(cmd, log_file=log_file, env=store.env(), cwd=REPO)
    base = f"http://127.0.0.1:{store.port}"
    wait_ready(proc, f"{base}/share/graphql", log_file)
    creds = json.loads((store.var_dir / "demo-credentials.json").read_text())
    return proc.pid, shuqiao_token(base, creds, "hrss")


def percentiles(c: Case) -> tuple[float, float, float]:
    s = c.summary()
    return s["rps"], s["p50_ms"], s["p99_ms"]


def report(cases: dict[tuple[str, str], Case], meta: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Shuqiao at scale {meta['when']}: small = demo small ({meta['counts']['small']}),"
        f" large = demo large + air_quality_daily grown ({meta['counts']['large']});"
        f" wrk -t1 -c{meta['connections']}, {meta['duration_s']}s per store per case in {meta['rounds']}"
        " alternating rounds; share tier, hrss's token; one uvicorn worker per store",
        "",
        f"{'':12s}{'---------- small ----------':>28s}  {'---------- large ----------':>28s}"
        f"  {'------- large ÷ small -------':>30s}",
        f"{'case':12s}{'req/s':>7s}{'p50':>7s}{'p99':>7s}{'pg µs':>7s}  {'req/s':>7s}{'p50':>7s}{'p99':>7s}"
        f"{'pg µs':>7s}  {'p50':>7s}{'p99':>7s}{'req/s':>7s}{'pg µs':>8s}  target: p99 ≤ 2×",
    ]
    for case in CASES:
        s, lg = cases.get(("small", case)), cases.get(("large", case))
        if s is None or lg is None:
            continue
        (sr, s50, s99), (lr, l50, l99) = percentiles(s), percentiles(lg)
        spg = s.summary()["cpu_us_per_request"].get("postgres", 0.0)
        lpg = lg.summary()["cpu_us_per_request"].get("postgres", 0.0)
        r50, r99 = l50 / s50, l99 / s99
        # p99 is the target; on a shared machine the small store's p99 is mostly the neighbours'
        # noise, so a p99 inside the target while the median is not is not passed
        verdict = "MISS" if r99 > 2 else ("ok" if r50 <= 2 else "MISS at p50 (small p99 = noise)")
        lines.append(
            f"{case:12s}{sr:7.0f}{s50:7.1f}{s99:7.1f}{spg:7.0f}  {lr:7.0f}{l50:7.1f}{l99:7.1f}{lpg:7.0f}"
            f"  {r50:6.2f}×{r99:6.2f}×{lr / sr:6.2f}×{lpg / spg if spg else 0:7.2f}×  {verdict}"
        )
    lines.append(
        "(latencies in ms; pg µs: PostgreSQL CPU per request, all its backends and parallel workers)"
    )
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1", help="server URL, no database")
    p.add_argument("--prefix", default="scale_data", help="databases <prefix>_small and <prefix>_large")
    p.add_argument("--rows", type=int, default=10_000_000, help="air_quality_daily rows in the large store")
    p.add_argument("--reuse", action="store_true", help="skip the setup of a store already built alike")
    p.add_argument("--duration", type=float, default=20, help="seconds measured per store per case")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--ports", default="8401,8402", help="small,large")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--wrk", default="wrk")
    return p.parse_args()


def main() -> int:
    a = parse_args()
    if not shutil.which(a.wrk):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    tmp = Path(tempfile.gettempdir())
    small_port, large_port = (int(x) for x in a.ports.split(","))
    stores = [
        Store(
            "small", f"{a.pg}/{a.prefix}_small", tmp / f"{a.prefix.replace('_', '-')}-small", small_port, 0
        ),
        Store(
            "large",
            f"{a.pg}/{a.prefix}_large",
            tmp / f"{a.prefix.replace('_', '-')}-large",
            large_port,
            a.rows,
        ),
    ]
    procs = Processes()

    def on_signal(signum: int, _frame: object) -> None:
        procs.stop_all()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = RESULTS_DIR / f"scale-logs-{stamp}"
    logs.mkdir(parents=True)
    started = time.monotonic()
    try:
        setup_s: dict[str, float] = {}
        for st in stores:
            if a.reuse and reusable(st):
                log(f"reusing {st.db} (shuqiao demo init again: new migrations, nothing reloaded)")
                demo_init(st)
            else:
                setup_s[st.size] = round(setup(st), 1)
        counts: dict[str, str] = {}
        for st in stores:
            with psycopg.connect(st.url) as conn:
                people = conn.execute("SELECT count(*) FROM pool_population").fetchone()[0]
                aq = conn.execute("SELECT count(*) FROM pool_air_quality_daily").fetchone()[0]
                size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[
                    0
                ]
            counts[st.size] = f"{people:,} people, {aq:,} air-quality rows, {size}"
            log(f"{st.db}: {counts[st.size]}")
        pages = page_variables()
        log("picking ID numbers (the demo generator)")
        ids = {st.size: id_numbers(st.size, LOOKUP_IDS) for st in stores}
        wanted = a.cases.split(",")
        cases: dict[tuple[str, str], Case] = {}
        for st in stores:
            log(f"starting the {st.size} gateway on 127.0.0.1:{st.port}")
            pid, token = start_gateway(st, procs, logs)
            for case in wanted:
                c = Case(
                    f"{st.size}",
                    "shuqiao",
                    case,
                    pid,
                    f"http://127.0.0.1:{st.port}/share/graphql",
                    {"Authorization": f"Bearer {token}"},
                    bodies(case, ids[st.size], pages),
                )
                check(c, c.bodies[0])
                c.script = write_lua(c, logs)
                c.script = c.script.rename(logs / f"{st.size}-{case.replace('+', '-')}.lua")
                cases[(st.size, case)] = c
        middle = bodies("page+total", [], pages[len(pages) // 2 :])[0]
        totals = {}
        for st in stores:
            any_case = cases[(st.size, wanted[0])]
            probe = Case(st.size, "shuqiao", "page+total", 0, any_case.url, any_case.headers, [middle])
            totals[st.size] = check(probe, middle)["total"]
        log(f"totalCount of the middle page's filter: {totals}")
        per_round = a.duration / a.rounds
        for case in wanted:
            group = [cases[(st.size, case)] for st in stores]
            for c in group:
                if a.warmup > 0:
                    run_wrk(stores[0].args(a.connections, a.wrk), c, a.warmup)
            for r in range(a.rounds):
                for c in group[r % 2 :] + group[: r % 2]:
                    st = stores[0] if c.target == "small" else stores[1]
                    measure_round(st.args(a.connections, a.wrk), c, per_round)
            for c in group:
                check(c, c.bodies[-1])
                rps, p50, p99 = percentiles(c)
                log(
                    f"{c.target:6s} {case:11s} {rps:7.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
                    f"  errors {sum(c.errors.values())}  rounds {c.rounds}"
                )
        procs.stop_all()
        log("EXPLAIN (ANALYZE) of the gateway's SQL on the large store")
        plans = explain_cases(stores[1], ids["large"], pages)
        meta = {
            "when": stamp,
            "counts": counts,
            "totals": totals,
            "connections": a.connections,
            "duration_s": a.duration,
            "rounds": a.rounds,
            "setup_s": setup_s,
            "wall_s": round(time.monotonic() - started, 1),
            "loadavg_after": os.getloadavg(),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "uname": platform.uname()._asdict(),
            },
            "queries": {
                "lookup": LOOKUP_Q,
                "page": PAGE_Q % (PAGE, ""),
                "page+total": PAGE_Q % (PAGE, " totalCount"),
            },
        }
        lines = report(cases, meta)
        for case, p in plans.items():
            lines += [
                "",
                f"-- {case}: {p['sql']}",
                f"-- params {p['params']}",
                p["plan"],
                "-- the generic plan (prepared statement):",
                p["generic_plan"],
            ]
        print("\n".join(lines), flush=True)
        result = {
            "meta": meta,
            "results": {f"{k[0]}/{k[1]}": c.summary() for k, c in cases.items()},
            "plans": plans,
        }
        out = RESULTS_DIR / f"scale-bench-{stamp}.json"
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        log(f"results in {out}; logs in {logs}; {meta['wall_s']:.0f}s in all")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
