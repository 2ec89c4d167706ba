"""The audit store at scale (PostgreSQL): `shuqiao audit verify` throughput, officer search by
person and by dataset (p50/p95), and bytes per event, over --events synthetic events.

The events are written straight into a fresh database (migrated to head) as the gateway would
have written them: a valid SM3 chain (chain.link, the writer's own function), the head moved to
the last one, the officers' field index (audit_field_access: one row per (event, dataset) with
the fields and their decisions as arrays, as gateway.audit.field_index derives them) filled and
its cursor at the head.
Their shape follows a share-tier read: 1-6 fields of one dataset with the decision and reason
of each, the read's row count, a signature key id; 2,000 principals (a department client, with
a person behind the token for a third of them), 60 datasets, a year of time.

    .venv/bin/python bench/audit_scale_bench.py                       # 200,000 events, ~1-2 min
    .venv/bin/python bench/audit_scale_bench.py --events 10000000 --passes 0   # the issue's scale
    .venv/bin/python bench/audit_scale_bench.py --events N --reuse    # measure an existing fill again

The fill: this process makes the events and chains them; a second process COPYs them (binary,
FREEZE, one transaction that began by truncating both tables, so the rows are written frozen and
all-visible) while the next batch is made; every index of the two tables is dropped first and
built once at the end. Progress is logged every 500,000 events.

Verification reads every event, so its rate depends on the events being in PostgreSQL's cache or
not: the first pass after the fill and a second one are printed (--passes 0: none)."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.audit.chain import GENESIS_HASH, HASHED_COLUMNS, link  # noqa: E402
from gateway.audit.field_index import index_keys  # noqa: E402
from gateway.audit.models import HEAD_ID  # noqa: E402
from gateway.audit.query import Filters, search  # noqa: E402
from gateway.audit.verify import verify_chain  # noqa: E402

PRINCIPALS = 2000
DATASETS = [f"dataset_{i:02d}" for i in range(60)]
FIELDS = [f"field_{i}" for i in range(12)]
ACTIONS = ("allow", "allow", "allow", "mask", "encrypt", "deny")
REASONS = {
    "allow": "grant g-{g} allows it",
    "mask": "L3 masked for this consumer",
    "encrypt": "L4 sealed for the consumer's key",
    "deny": "no grant covers it",
}
# the chain's own hashed columns (gateway.audit.chain), then what is stored beside them
EVENT_COLS = (*HASHED_COLUMNS, "hash", "subject", "row_count", "variables_enc", "signature_kid")
ACCESS_COLS = ("seq", "dataset", "fields", "actions")
PARTITIONED: set[str] = set()  # tables of the two that are partitioned (no COPY FREEZE)
CHUNK = 20_000  # events per COPY
PROGRESS = 500_000  # events between progress lines


def log(msg: str) -> None:
    print(f"[audit-scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def principal(i: int) -> tuple[str, str, str | None]:
    """(client id, department, the person behind the token or None)."""
    dept = f"dept{i % 40:02d}"
    return f"client-{i:04d}", dept, (f"person-{i:04d}" if i % 3 == 0 else None)


PRINCIPAL_ROWS = [principal(i) for i in range(PRINCIPALS)]


def make_rows(
    rng: random.Random, start_seq: int, n: int, t0: datetime, step: timedelta
) -> list[dict[str, Any]]:
    """`n` events from `start_seq`, not yet chained (bench/audit_verify_bench.py fills with them)."""
    return make_batch(rng, start_seq, n, t0, step)[0]


def make_batch(
    rng: random.Random, start_seq: int, n: int, t0: datetime, step: timedelta
) -> tuple[list[dict[str, Any]], list[tuple[int, str, list[str], list[str]]]]:
    """`n` events from `start_seq` (not yet chained) and their field-index rows, derived as
    gateway.audit.field_index derives them (`index_keys`: one per (event, dataset), the fields and
    their decisions as arrays)."""
    rows, access = [], []
    pareto, randint, sample, choice = rng.paretovariate, rng.randint, rng.sample, rng.choice
    bits, uniform = rng.getrandbits, rng.uniform
    for seq in range(start_seq, start_seq + n):
        p = int(pareto(1.2)) % PRINCIPALS  # a few principals make most of the calls
        client, dept, person = PRINCIPAL_ROWS[p]
        ds = DATASETS[int(pareto(1.0)) % len(DATASETS)]
        fields = []
        for f in sample(FIELDS, randint(1, 6)):
            action = choice(ACTIONS)
            fields.append(
                {
                    "action": action,
                    "dataset": ds,
                    "field": f,
                    "grant_id": p if action == "allow" else None,
                    "reason": REASONS[action].format(g=p),
                }
            )
        nrows = choice((1, 1, 1, 10, 100))
        reads = [{"dataset": ds, "grant_id": p, "purpose": "核验", "rows": nrows}]
        rows.append(
            {
                "seq": seq,
                "occurred_at": t0 + step * seq,
                "request_id": f"{bits(128):032x}",
                "tier": "share",
                "principal_kind": "department",
                "principal_id": client,
                "consumer": dept,
                "client_address": f"10.{p % 256}.{(p // 256) % 256}.7",
                "operation_name": "Lookup" if nrows == 1 else "Page",
                "operation_type": "query",
                "query_digest": f"{bits(256):064x}",
                "status": 200,
                "error_codes": "[]",
                "latency_ms": round(uniform(2, 40), 3),
                # as the writer stores it (gateway.audit.rows)
                "detail": orjson.dumps(
                    {"fields": fields, "reads": reads}, option=orjson.OPT_SORT_KEYS
                ).decode(),
                "subject": person,
                "row_count": nrows,
                "variables_enc": None,
                "signature_kid": "sm2-2026-01",
            }
        )
        access.extend((seq, d, list(e), list(e.values())) for d, e in index_keys(fields, reads).items())
    return rows, access


async def copy_frozen(
    conn: asyncpg.Connection, table: str, columns: tuple[str, ...], records: list[Any]
) -> None:
    """`copy_records_to_table` (binary COPY) with FREEZE, which asyncpg has no option for; a
    partitioned table (audit_event by month, migration 0026) takes no FREEZE: plain COPY."""
    cols = ", ".join(columns)
    intro = await conn._prepare(f"SELECT {cols} FROM {table} LIMIT 1", use_cache=True)
    freeze = table not in PARTITIONED
    stmt = f"COPY {table} ({cols}) FROM STDIN (FORMAT binary, FREEZE {str(freeze).lower()})"
    await conn._protocol.copy_in(stmt, None, None, records, intro._state, None)


def writer(url: str, batches: Any, done: Any, partitioned: tuple[str, ...] = ()) -> None:
    """The writer process: COPY each batch it is handed, all in one transaction that began by
    truncating both tables, so COPY FREEZE writes the rows frozen and all-visible (no VACUUM pass
    over 16 GB afterwards, and index-only scans work at once)."""

    PARTITIONED.update(partitioned)

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SET synchronous_commit = off")
            async with conn.transaction():
                await conn.execute("TRUNCATE audit_event, audit_field_access")
                while (batch := batches.get()) is not None:
                    events, access = batch
                    await copy_frozen(conn, "audit_event", EVENT_COLS, events)
                    await copy_frozen(conn, "audit_field_access", ACCESS_COLS, access)
                    done.put(len(events))
        finally:
            await conn.close()

    asyncio.run(run())
    done.put(None)


def put(batches: Any, proc: Any, item: Any) -> None:
    """Hand the writer a batch, or fail if it has stopped (rather than wait for it forever)."""
    while True:
        try:
            batches.put(item, timeout=1)
            return
        except queue.Full:
            if not proc.is_alive():
                batches.cancel_join_thread()  # nobody will read what is queued: exit anyway
                raise RuntimeError(f"the writer stopped (exit {proc.exitcode})") from None


async def secondary_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop every index of the two tables (primary keys too) and return the statements that
    rebuild them: one sort per index after the fill instead of ~5 b-tree inserts per event."""
    rebuild = []
    for table in ("audit_event", "audit_field_access"):
        for name, definition in await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = $1::regclass AND contype = 'p'",
            table,
        ):
            await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table
        ):
            await conn.execute(f'DROP INDEX "{name}"')
            # a partitioned table's index reads "ON ONLY" (the parent alone): rebuild it on every partition
            rebuild.append(definition.replace(" ON ONLY ", " ON "))
    return rebuild


async def fill(url: str, events: int) -> float:
    """Write `events` chained events and their field-index rows; seconds taken. This process
    makes and chains the events (chain.link, the writer's own); a second one COPYs them, so the
    hashing and PostgreSQL's work overlap."""
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE audit_event, audit_field_access")
        t0 = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=365)
        partitioned = tuple(
            await conn.fetchval(
                "SELECT array_agg(relname::text) FROM pg_class"
                " WHERE relname IN ('audit_event', 'audit_field_access') AND relkind = 'p'"
            )
            or ()
        )
        if partitioned:  # the months of the year back made first, so no row lands in the default
            from sqlalchemy.ext.asyncio import create_async_engine

            from gateway.audit.partitions import maintain

            engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
            try:
                await maintain(engine, since=t0.replace(tzinfo=UTC))
            finally:
                await engine.dispose()
        rebuild = await secondary_indexes(conn)
        ctx = multiprocessing.get_context("spawn")  # not fork: this process runs an event loop
        batches, done = ctx.Queue(maxsize=2), ctx.Queue()
        proc = ctx.Process(target=writer, args=(url, batches, done, partitioned), daemon=True)
        proc.start()
        rng = random.Random(18)
        step = timedelta(days=365) / max(events, 1)
        seq, last, written, next_log = 0, GENESIS_HASH, 0, PROGRESS
        while seq < events:
            n = min(CHUNK, events - seq)
            rows, access = make_batch(rng, seq + 1, n, t0, step)
            seq, last = link(rows, seq, last)
            put(batches, proc, ([tuple(r[c] for c in EVENT_COLS) for r in rows], access))
            while not done.empty():
                written += done.get() or 0
            if seq >= next_log:
                rate = seq / (time.monotonic() - started)
                log(
                    f"{seq:,} events chained, {written:,} written ({rate:,.0f}/s;"
                    f" ~{(events - seq) / rate:,.0f}s to go)"
                )
                next_log += PROGRESS
        put(batches, proc, None)
        while proc.is_alive() or not done.empty():
            try:
                n = done.get(timeout=1)
            except queue.Empty:
                continue
            if n is None:
                break
            written += n
        proc.join()
        if proc.exitcode != 0 or written != events:
            raise RuntimeError(f"the writer stopped (exit {proc.exitcode}) after {written:,} events")
        log(f"{events:,} events written in {time.monotonic() - started:,.0f}s; rebuilding the indexes")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for statement in rebuild:
            t = time.monotonic()
            await conn.execute(statement)
            log(f"  {statement[:90]}: {time.monotonic() - t:,.0f}s")
        await conn.execute(
            "INSERT INTO audit_chain_head (id, seq, hash) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            HEAD_ID,
            seq,
            last,
        )
        await conn.execute(
            "INSERT INTO audit_index_cursor (id, seq) VALUES ($1, $2)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
            HEAD_ID,
            seq,
        )
        await conn.execute("VACUUM ANALYZE audit_event")
        await conn.execute("VACUUM ANALYZE audit_field_access")
    finally:
        await conn.close()
    return time.monotonic() - started


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def measure(url: str, searches: int, passes: int = 2, workers: int = 1) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    out: dict[str, Any] = {}
    try:
        for label in ("verify (1st pass)", "verify (2nd pass)")[:passes]:
            t = time.perf_counter()
            report = await verify_chain(engine, workers=workers)
            took = time.perf_counter() - t
            if not report.ok:
                raise RuntimeError(f"the filled chain does not verify: {report}")
            out[label] = {
                "events": report.events_checked,
                "seconds": took,
                "events_per_s": report.events_checked / took,
            }
            rate = report.events_checked / took
            log(f"{label}: {report.events_checked:,} events in {took:.1f}s = {rate:,.0f}/s")
        rng = random.Random(7)
        cases = {
            # people an officer looks up: a busy client, a quiet one, a person behind a token
            "person": [
                Filters(principal=principal(rng.choice((1, 2, 5, 50, 700, 1999, 3, 300)))[0])
                for _ in range(searches)
            ],
            "person (subject)": [
                Filters(principal=f"person-{rng.choice((3, 30, 300, 1998)):04d}") for _ in range(searches)
            ],
            "dataset": [Filters(dataset=rng.choice(DATASETS)) for _ in range(searches)],
            "dataset + field": [
                Filters(dataset=rng.choice(DATASETS), field=rng.choice(FIELDS)) for _ in range(searches)
            ],
            "dataset + field + decision": [
                Filters(dataset=rng.choice(DATASETS), field=rng.choice(FIELDS), decision="deny")
                for _ in range(searches)
            ],
            "field (any dataset)": [Filters(field=rng.choice(FIELDS)) for _ in range(searches)],
        }
        # what an officer's "count every match" (exact=true) costs for the busiest client and dataset
        few = max(3, searches // 10)
        cases["person, exact total"] = [Filters(principal=principal(1)[0])] * few
        cases["dataset, exact total"] = [Filters(dataset=DATASETS[1])] * few
        async with engine.connect() as conn:
            for name, filters in cases.items():
                times, totals, exact = [], [], []
                for f in filters:
                    t = time.perf_counter()
                    page = await search(conn, f, limit=50, exact=name.endswith("exact total"))
                    times.append(1000 * (time.perf_counter() - t))
                    totals.append(page["total"])
                    exact.append(page["total_exact"])
                out[f"search: {name}"] = {
                    "n": len(times),
                    "p50_ms": statistics.median(times),
                    "p95_ms": pct(times, 95),
                    "max_ms": max(times),
                    "matches_median": statistics.median(totals),
                    "exact": all(exact),
                }
                log(f"search by {name}: p50 {statistics.median(times):.1f} ms, p95 {pct(times, 95):.1f} ms")
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            n = await raw.fetchval("SELECT count(*) FROM audit_event")
            # summed over the partitions when audit_event is partitioned (the parent holds nothing)
            ev = await raw.fetchval(
                "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('audit_event')"
            )
            heap = await raw.fetchval(
                "SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('audit_event')"
            )
            idx = await raw.fetchval("SELECT pg_total_relation_size('audit_field_access')")
        out["bytes"] = {
            "events": n,
            "audit_event_total_per_event": ev / n,
            "audit_event_heap_per_event": heap / n,
            "field_index_per_event": idx / n,
            "all_per_event": (ev + idx) / n,
        }
    finally:
        await engine.dispose()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1/audit_scale_bench")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--searches", type=int, default=40, help="searches per kind")
    p.add_argument("--reuse", action="store_true", help="keep the database if it holds --events events")
    p.add_argument(
        "--passes",
        type=int,
        default=2,
        choices=(0, 1, 2),
        help="verification passes (0: none, fill and search only)",
    )
    p.add_argument("--workers", type=int, default=1, help="verify_chain's worker processes")
    args = p.parse_args()
    db = args.database_url.rsplit("/", 1)[1]
    reuse = False
    if args.reuse:
        try:
            with psycopg.connect(args.database_url) as c:
                row = c.execute("SELECT count(*) FROM audit_event").fetchone()
                reuse = bool(row and row[0] == args.events)
        except psycopg.Error:
            reuse = False
    fill_s = None
    if not reuse:
        with psycopg.connect(args.database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{db}"')
        env = {**os.environ, "SHUQIAO_DATABASE_URL": args.database_url, "PYTHONPATH": str(REPO)}
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from gateway.db import upgrade; import os; upgrade(os.environ['SHUQIAO_DATABASE_URL'])",
            ],
            env=env,
            check=True,
            cwd=REPO,
        )
        log(f"filling {args.events:,} events")
        fill_s = asyncio.run(fill(args.database_url, args.events))
        log(f"filled in {fill_s:.0f}s")
    result = asyncio.run(measure(args.database_url, args.searches, args.passes, args.workers))
    result["meta"] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "events": args.events,
        "fill_s": fill_s,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }
    b = result["bytes"]
    print(
        f"\nAudit store at scale: {b['events']:,} events (PostgreSQL), load average {os.getloadavg()[0]:.1f}"
    )
    for key, v in result.items():
        if key.startswith("verify"):
            print(
                f"  {key:28s} {v['events_per_s']:>12,.0f} events/s   ({v['seconds']:.1f} s)"
                "   target ≥ 200,000"
            )
    for key, v in result.items():
        if key.startswith("search"):
            print(
                f"  {key:28s} p50 {v['p50_ms']:8.1f} ms   p95 {v['p95_ms']:8.1f} ms"
                f"   (median total {v['matches_median']:,.0f}{'' if v['exact'] else ', capped'})"
                + ("   (exact=true)" if key.endswith("exact total") else "   target p95 < 200 ms")
            )
    print(
        f"  bytes per event: audit_event {b['audit_event_total_per_event']:.0f}"
        f" (heap {b['audit_event_heap_per_event']:.0f}),"
        f" field index {b['field_index_per_event']:.0f}, together {b['all_per_event']:.0f}"
    )
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"audit-scale-{args.events}.json").write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
