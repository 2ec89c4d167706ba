"""`shuqiao audit verify` throughput (PostgreSQL): the serial verifier of before (its code path kept
here, for the baseline in the same run) against `verify_chain` with 1 and 2 worker processes.

The events are COPYed into a fresh database (migrated to head) chained with the writer's own
function (gateway.audit.chain.link), with the synthetic share-tier events of
bench/audit_scale_bench.py (1-6 fields of a dataset with decisions and reasons, a signature key
id, a person behind the token for a third of them): realistic `detail` sizes.

    .venv/bin/python bench/audit_verify_bench.py                        # 2,000,000 events
    .venv/bin/python bench/audit_verify_bench.py --events 200000 --reuse
    git archive main | tar -x -C /tmp/main-tree     # then, the same data, code of main vs this one:
    .venv/bin/python bench/audit_verify_bench.py --events 1000000 --reuse --before-tree /tmp/main-tree

For each verifier: events/s (wall) and CPU µs per event, the verifier's own processes (parent and
workers) and, separately, the PostgreSQL backends serving it (from /proc), since on a shared
machine the wall rate says as much about the neighbours as about the code. Each is run --rounds
times in alternation; the best wall time of each is reported. With --before-tree, then also one
range walked in this process by that checkout's `verify_range` and by this one's, alternating on one
connection: CPU µs per event of this process and of its backend (the per-event code's cost alone,
which the worker processes' figures above mix with process start-up and the neighbours)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from audit_scale_bench import make_rows  # noqa: E402

from gateway.audit.chain import GENESIS_HASH, HASHED_COLUMNS, event_hash, link  # noqa: E402
from gateway.audit.models import HEAD_ID  # noqa: E402
from gateway.audit.verify import verify_chain  # noqa: E402

EVENT_COLS = (*HASHED_COLUMNS, "hash", "subject", "row_count", "variables_enc", "signature_kid")
CHUNK = 50_000
DEFAULT_URL = "postgresql://postgres@127.0.0.1/audit_verify_bench"


def log(msg: str) -> None:
    print(f"[audit-verify {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def fill(url: str, events: int) -> float:
    """COPY `events` chained events and move the head to the last; seconds taken."""
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE audit_event")
        rng = random.Random(18)
        t0 = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=365)
        step = timedelta(days=365) / max(events, 1)
        seq, last = 0, GENESIS_HASH
        while seq < events:
            n = min(CHUNK, events - seq)
            rows = make_rows(rng, seq + 1, n, t0, step)
            seq, last = link(rows, seq, last)
            await conn.copy_records_to_table(
                "audit_event",
                records=[tuple(r[c] for c in EVENT_COLS) for r in rows],
                columns=list(EVENT_COLS),
            )
            if seq % 500_000 < CHUNK:
                log(f"{seq:,} events written ({seq / (time.monotonic() - started):,.0f}/s)")
        await conn.execute(
            "INSERT INTO audit_chain_head (id, seq, hash) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            HEAD_ID,
            seq,
            last,
        )
        await conn.execute("VACUUM ANALYZE audit_event")
    finally:
        await conn.close()
    return time.monotonic() - started


def create_database(url: str) -> None:
    db = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{db}"')
    env = {**os.environ, "SHUQIAO_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    code = "from gateway.db import upgrade; import os; upgrade(os.environ['SHUQIAO_DATABASE_URL'])"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=REPO)


def count_events(url: str) -> int | None:
    try:
        with psycopg.connect(url) as c:
            row = c.execute("SELECT count(*) FROM audit_event").fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


# -- the serial verifier as it was (gateway/audit/verify.py before the ranges), for the baseline --

OLD_COLUMNS = (*HASHED_COLUMNS, "subject", "row_count", "variables_enc", "signature_kid", "hash")
OLD_PAGE = f"SELECT {', '.join(OLD_COLUMNS)} FROM audit_event WHERE seq > $1 ORDER BY seq LIMIT $2"


async def _old_pages(raw: Any, size: int) -> AsyncIterator[Sequence[Mapping[str, Any]]]:
    page: asyncio.Future[list[Any]] | None = asyncio.ensure_future(raw.fetch(OLD_PAGE, 0, size))
    try:
        while page is not None:
            rows = await page
            page = None
            if len(rows) == size:
                page = asyncio.ensure_future(raw.fetch(OLD_PAGE, rows[-1]["seq"], size))
            yield rows
    finally:
        if page is not None:
            with contextlib.suppress(Exception):
                await page


async def old_verify_chain(engine: Any) -> tuple[bool, int]:
    """The old loop (no prune anchors in this database): (ok, events checked)."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            head = (await conn.exec_driver_sql("SELECT seq, hash FROM audit_chain_head")).first()
            raw = (await conn.get_raw_connection()).driver_connection
            expected, prev_hash, checked = 1, GENESIS_HASH, 0
            async with contextlib.aclosing(_old_pages(raw, 10_000)) as pages:
                async for rows in pages:
                    for row in rows:
                        if int(row["seq"]) != expected or event_hash(row) != row["hash"]:
                            return False, checked
                        if row["prev_hash"] != prev_hash:
                            return False, checked
                        checked += 1
                        prev_hash = row["hash"]
                        expected += 1
            return (head is not None and int(head.seq) == expected - 1 and head.hash == prev_hash), checked
        finally:
            await conn.rollback()


# -- measuring -----------------------------------------------------------------------------------


class BackendCpu:
    """CPU seconds of this database's PostgreSQL backends (same host), sampled from /proc every
    50 ms while a verifier runs; a backend that exits loses at most its last 50 ms."""

    def __init__(self, db: str) -> None:
        self.tag = f" {db} ".encode()
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
        self._stop = asyncio.Event()

    def _sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read()
                if not cmd.startswith(b"postgres: ") or self.tag not in cmd.replace(b"\0", b" "):
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / self.ticks
            pid = int(entry)
            self.start.setdefault(pid, cpu if self._started else 0.0)
            self.seen[pid] = cpu

    async def run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.05)
        self._sample()

    @contextlib.asynccontextmanager
    async def measuring(self) -> AsyncIterator[BackendCpu]:
        self._started = False
        self._sample()  # backends alive before: count from their CPU now
        self._started = True
        task = asyncio.ensure_future(self.run())
        try:
            yield self
        finally:
            self._stop.set()
            await task

    def total(self) -> float:
        return sum(self.seen[pid] - self.start.get(pid, 0.0) for pid in self.seen)


async def timed(label: str, url: str, job: Callable[[Any], Awaitable[tuple[bool, int]]]) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    backends = BackendCpu(url.rsplit("/", 1)[1])
    try:
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        async with backends.measuring():
            cpu0, wall0 = time.process_time(), time.perf_counter()
            ok, events = await job(engine)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        await engine.dispose()
    if not ok:
        raise RuntimeError(f"{label}: the filled chain does not verify")
    workers_cpu = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
    out = {
        "events": events,
        "wall_s": wall,
        "events_per_s": events / wall,
        "verifier_cpu_us_per_event": (cpu + workers_cpu) / events * 1e6,
        "postgres_cpu_us_per_event": backends.total() / events * 1e6,
        "loadavg_after": os.getloadavg()[0],
    }
    log(
        f"{label}: {events:,} events in {wall:.1f}s = {out['events_per_s']:,.0f}/s; CPU/event "
        f"{out['verifier_cpu_us_per_event']:.2f} µs verifier"
        f" + {out['postgres_cpu_us_per_event']:.2f} µs PostgreSQL"
    )
    return out


def _new(workers: int) -> Callable[[Any], Awaitable[tuple[bool, int]]]:
    async def job(engine: Any) -> tuple[bool, int]:
        report = await verify_chain(engine, workers=workers)
        return report.ok, report.events_checked

    return job


VERIFIERS: dict[str, Callable[[Any], Awaitable[tuple[bool, int]]]] = {
    "serial, before (baseline)": old_verify_chain,
    "verify_chain, workers=1": _new(1),
    "verify_chain, workers=2": _new(2),
}


async def measure(url: str, rounds: int) -> dict[str, list[dict[str, Any]]]:
    conn = await asyncpg.connect(url)
    try:  # the table and its index into the OS cache once, so no verifier pays for the first read
        await conn.fetchval("SELECT sum(length(detail)) FROM audit_event")
        await conn.fetchval("SELECT count(*) FROM (SELECT seq FROM audit_event ORDER BY seq) s")
    finally:
        await conn.close()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in VERIFIERS}
    for _ in range(rounds):
        for name, job in VERIFIERS.items():
            results[name].append(await timed(name, url, job))
    return results


# -- one range in this process: another tree's verify_ranges against this one's -----------------


def _load_ranges(tree: Path) -> Any:
    """gateway/audit/verify_ranges.py of another checkout (e.g. `git archive main | tar -x -C DIR`),
    as a module of its own: its walk, against this database."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "before_verify_ranges", tree / "gateway/audit/verify_ranges.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_range(url: str, tree: Path, events: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """`verify_range` over seq 1..events in this process, the other tree's and this one's in
    alternation, on one connection (one backend): CPU µs per event of this process and of the
    backend. The same data, cache and neighbours for both, so the difference is the code's."""
    import gc

    from gateway.audit import verify_ranges

    walks = {"before (--before-tree)": _load_ranges(tree), "now": verify_ranges}
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in walks}
    conn = await asyncpg.connect(url)
    gc.disable()  # as in a worker process
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        for _ in range(rounds):
            for name, module in walks.items():
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    b0, c0 = _backend_cpu(pid), time.process_time()
                    r = await module.verify_range(conn, 0, events, 1, GENESIS_HASH, None)
                    cpu, backend = time.process_time() - c0, _backend_cpu(pid) - b0
                if r.bad_seq is not None or r.checked != events:
                    raise RuntimeError(f"{name}: the filled chain does not verify: {r}")
                out[name].append((cpu / events * 1e6, backend / events * 1e6))
                us, pg = out[name][-1]
                log(f"one range, {name}: {us:.2f} µs verifier + {pg:.2f} µs PostgreSQL")
    finally:
        gc.enable()
        await conn.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=DEFAULT_URL)
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--reuse", action="store_true", help="keep the database if it holds --events events")
    p.add_argument("--fill-only", action="store_true")
    p.add_argument("--rounds", type=int, default=1, help="each verifier this many times, alternating")
    p.add_argument(
        "--before-tree",
        type=Path,
        help="also time one range in this process with this checkout's verify_ranges against this one's",
    )
    args = p.parse_args()
    if not (args.reuse and count_events(args.database_url) == args.events):
        create_database(args.database_url)
        log(f"filling {args.events:,} events")
        took = asyncio.run(fill(args.database_url, args.events))
        log(f"filled in {took:.0f}s ({args.events / took:,.0f} events/s)")
    if args.fill_only:
        return 0
    load_before = os.getloadavg()
    results = asyncio.run(measure(args.database_url, args.rounds))
    best = {name: min(runs, key=lambda r: r["wall_s"]) for name, runs in results.items()}
    base = best["serial, before (baseline)"]
    print(
        f"\n`shuqiao audit verify`, {args.events:,} events (PostgreSQL), {os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after "
        f"(best of {args.rounds} per verifier)"
    )
    print(
        f"  {'verifier':27s} {'events/s':>9s} {'wall':>7s} {'ratio':>6s}"
        "   CPU µs/event: verifier  PostgreSQL  ratio (verifier)"
    )
    for name, r in best.items():
        cpu = r["verifier_cpu_us_per_event"]
        print(
            f"  {name:27s} {r['events_per_s']:>9,.0f} {r['wall_s']:>6.1f}s"
            f" {r['events_per_s'] / base['events_per_s']:>5.2f}x"
            f"                 {cpu:>8.2f}  {r['postgres_cpu_us_per_event']:>10.2f}"
            f"  {base['verifier_cpu_us_per_event'] / cpu:>5.2f}x"
        )
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "events": args.events,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    doc: dict[str, Any] = {"meta": meta, "runs": results}
    if args.before_tree:
        rounds = max(args.rounds, 3)
        ranges = asyncio.run(one_range(args.database_url, args.before_tree, args.events, rounds))
        print(f"  one range in this process, {args.events:,} events, best of {rounds} (CPU µs/event):")
        for name, runs in ranges.items():
            cpu, backend = min(runs, key=sum)
            print(f"  {name:27s} verifier {cpu:6.2f}  PostgreSQL {backend:5.2f}  total {cpu + backend:6.2f}")
        doc["one_range"] = ranges
    (out / f"audit-verify-{args.events}.json").write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
