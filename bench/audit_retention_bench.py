"""Retention at scale (PostgreSQL): pruning the oldest month of the audit log by DELETE (the table
before migration 0027) against dropping its partition (0027), on the same events.

Two databases, `audit_part_bench_0026` (migrated to 0026: one audit_event table) and
`audit_part_bench` (head: audit_event partitioned by month), get the same N chained events
spread evenly over the last 12 whole months, written with COPY (the rows are linked once, with
gateway.audit.chain's own `link`, and copied into both), and the same field-index rows. Then in
each, what retention's commit does for the oldest month (events 1..K, K the month's last seq):

  - old: DELETE FROM audit_field_access WHERE seq <= K; DELETE FROM audit_event WHERE seq <= K
  - new: the same field-index DELETE; gateway.audit.retention._prune_partitions (DETACH + DROP of
    the month, DELETE of the few rows of the range in the next month)

each in one transaction, timed, with the WAL records of that transaction (pg_walinspect, so
what other sessions on a shared server write is not counted); then VACUUM (what the DELETE leaves for
autovacuum to do), and the bytes of each table and its indexes before and after. The archive
writing and verification before the commit is the same for both and is not included.

Before the prune, what partitioning costs elsewhere, on the same two tables: `verify_chain` over
all N events (rounds old, new, new, old), and the gateway's writer (`ChainedAuditLog`, one event
per transaction, as a request alone pays) in alternating rounds.

    .venv/bin/python bench/audit_retention_bench.py                  # 1,000,000 events (~3-5 min)
    .venv/bin/python bench/audit_retention_bench.py --events 200000  # quicker
    .venv/bin/python bench/audit_retention_bench.py --prune-months 4 # 4 months at once: a month's
                                                                     # worth at 4,000,000 a year
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.audit.chain import GENESIS_HASH, HASHED_COLUMNS, link  # noqa: E402
from gateway.audit.models import HEAD_ID  # noqa: E402
from gateway.audit.partitions import MonthPartition, month_after  # noqa: E402

EVENT_COLS = (*HASHED_COLUMNS, "hash", "subject", "row_count", "variables_enc", "signature_kid")
DATASETS = [f"dataset_{i:02d}" for i in range(60)]
FIELDS = [f"field_{i}" for i in range(12)]
ACTIONS = ("allow", "allow", "allow", "mask", "encrypt", "deny")
CHUNK = 50_000
MONTHS = 12
OLD, NEW = "audit_part_bench_0026", "audit_part_bench"


def log(msg: str) -> None:
    print(f"[audit-retention {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_rows(rng: random.Random, start: int, n: int, t0: datetime, step: timedelta) -> list[dict[str, Any]]:
    """A share-tier read each: 1-6 fields of one dataset, their decisions, a row count."""
    rows = []
    for k in range(n):
        seq = start + k
        p = int(rng.paretovariate(1.2)) % 2000
        ds = DATASETS[int(rng.paretovariate(1.0)) % len(DATASETS)]
        fields = [
            {"action": rng.choice(ACTIONS), "dataset": ds, "field": f, "grant_id": p, "reason": "grant"}
            for f in rng.sample(FIELDS, rng.randint(1, 6))
        ]
        nrows = rng.choice((1, 1, 1, 10, 100))
        detail = {
            "fields": fields,
            "reads": [{"dataset": ds, "grant_id": p, "purpose": "核验", "rows": nrows}],
        }
        rows.append(
            {
                "seq": seq,
                "occurred_at": t0 + step * (seq - 1),
                "request_id": f"{rng.getrandbits(128):032x}",
                "tier": "share",
                "principal_kind": "department",
                "principal_id": f"client-{p:04d}",
                "consumer": f"dept{p % 40:02d}",
                "client_address": f"10.{p % 256}.{(p // 256) % 256}.7",
                "operation_name": "Lookup" if nrows == 1 else "Page",
                "operation_type": "query",
                "query_digest": f"{rng.getrandbits(256):064x}",
                "status": 200,
                "error_codes": "[]",
                "latency_ms": round(rng.uniform(2, 40), 3),
                "detail": json.dumps(detail, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
                "subject": f"person-{p:04d}" if p % 3 == 0 else None,
                "row_count": nrows,
                "variables_enc": None,
                "signature_kid": "sm2-2026-01",
            }
        )
    return rows


def create(base: str, name: str, revision: str) -> str:
    url = f"{base}/{name}"

    async def go() -> None:
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(go())

    async def walinspect() -> None:  # to count a transaction's own WAL on a shared server
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        finally:
            await conn.close()

    asyncio.run(walinspect())
    env = {**os.environ, "URL": url.replace("postgresql://", "postgresql+asyncpg://"), "REV": revision}
    code = "from gateway.db import upgrade; import os; upgrade(os.environ['URL'], os.environ['REV'])"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=REPO)
    return url


async def fill(urls: list[str], events: int, t0: datetime, end: datetime) -> None:
    conns = [await asyncpg.connect(u) for u in urls]
    try:
        step = (end - t0) / events
        rng = random.Random(18)
        seq, last, started = 0, GENESIS_HASH, time.monotonic()
        while seq < events:
            rows = make_rows(rng, seq + 1, min(CHUNK, events - seq), t0, step)
            seq, last = link(rows, seq, last)
            records = [tuple(r[c] for c in EVENT_COLS) for r in rows]
            access = [
                (r["seq"], f["dataset"], f["field"], f["action"])
                for r in rows
                for f in {(x["dataset"], x["field"]): x for x in json.loads(r["detail"])["fields"]}.values()
            ]
            for conn in conns:
                await conn.copy_records_to_table("audit_event", records=records, columns=list(EVENT_COLS))
                await conn.copy_records_to_table(
                    "audit_field_access", records=access, columns=["seq", "dataset", "field", "action"]
                )
            if seq % 200_000 < CHUNK:
                log(f"{seq:,} events written to both ({seq / (time.monotonic() - started):,.0f}/s)")
        for conn in conns:
            await conn.execute(
                "INSERT INTO audit_chain_head (id, seq, hash) VALUES ($1, $2, $3) ON CONFLICT (id)"
                " DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                HEAD_ID,
                seq,
                last,
            )
            await conn.execute("VACUUM ANALYZE audit_event")
            await conn.execute("VACUUM ANALYZE audit_field_access")
    finally:
        for conn in conns:
            await conn.close()


SIZES = """
WITH leaves AS (
    SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf
    UNION ALL SELECT $1::regclass
    WHERE NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = $1::regclass))
SELECT coalesce(sum(pg_relation_size(relid)), 0) AS heap, coalesce(sum(pg_indexes_size(relid)), 0) AS indexes
FROM leaves"""


async def sizes(conn: asyncpg.Connection) -> dict[str, int]:
    out: dict[str, int] = {}
    for table in ("audit_event", "audit_field_access"):
        row = await conn.fetchrow(SIZES, table)
        out[f"{table} heap"], out[f"{table} indexes"] = int(row["heap"]), int(row["indexes"])
    return out


WAL_OF_XACT = """
SELECT coalesce(sum(record_length), 0) FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)
WHERE xid = $3::text::xid"""


async def prune(url: str, through: int, partitioned: bool) -> dict[str, Any]:
    """Retention's commit for events 1..through, timed; then VACUUM, timed; sizes before and after."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from gateway.audit.retention import _prune_partitions

    raw = await asyncpg.connect(url)
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        before = await sizes(raw)
        t = time.perf_counter()
        async with engine.begin() as conn:
            lsn0, xid = (
                await conn.execute(
                    text("SELECT pg_current_wal_insert_lsn()::text, pg_current_xact_id()::text")
                )
            ).one()
            await conn.execute(text("DELETE FROM audit_field_access WHERE seq <= :k"), {"k": through})
            index_s = time.perf_counter() - t
            lsn1 = (await conn.execute(text("SELECT pg_current_wal_insert_lsn()::text"))).scalar()
            if partitioned:
                dropped = await _prune_partitions(conn, through)
            else:
                await conn.execute(text("DELETE FROM audit_event WHERE seq <= :k"), {"k": through})
                dropped = []
        total_s = time.perf_counter() - t
        # this transaction's own WAL records (pg_walinspect), whatever else the shared server writes
        lsn2 = await raw.fetchval("SELECT pg_current_wal_flush_lsn()::text")
        xact = str(int(xid) % 2**32)
        wal_index = int(await raw.fetchval(WAL_OF_XACT, lsn0, lsn1, xact))
        wal_events = int(await raw.fetchval(WAL_OF_XACT, lsn1, lsn2, xact))
        t = time.perf_counter()
        await raw.execute("VACUUM audit_event")
        vacuum_events_s = time.perf_counter() - t
        t = time.perf_counter()
        await raw.execute("VACUUM audit_field_access")
        vacuum_index_s = time.perf_counter() - t
        left = await raw.fetchval("SELECT min(seq) FROM audit_event")
        return {
            "commit_s": total_s,
            "field_index_delete_s": index_s,
            "events_s": total_s - index_s,
            "wal_field_index_bytes": wal_index,
            "wal_events_bytes": wal_events,
            "vacuum_audit_event_s": vacuum_events_s,
            "vacuum_field_index_s": vacuum_index_s,
            "dropped": dropped,
            "first_left": int(left),
            "before": before,
            "after": await sizes(raw),
        }
    finally:
        await raw.close()
        await engine.dispose()


async def costs(urls: dict[str, str], appends: int) -> dict[str, Any]:
    """verify_chain seconds (rounds old, new, new, old) and the writer's µs per appended event
    (one at a time, alternating rounds of appends/4) on each layout."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from gateway.access_log import AccessEvent
    from gateway.audit.store import ChainedAuditLog
    from gateway.audit.verify import verify_chain

    engines = {
        k: create_async_engine(u.replace("postgresql://", "postgresql+asyncpg://")) for k, u in urls.items()
    }
    out: dict[str, Any] = {k: {"verify_s": [], "append_us": []} for k in urls}
    try:
        for key in ("old", "new", "new", "old"):
            t = time.perf_counter()
            report = await verify_chain(engines[key])
            took = time.perf_counter() - t
            assert report.ok, report
            out[key]["verify_s"].append(took)
            log(f"verify ({key}): {report.events_checked:,} events in {took:.1f}s")
        sinks = {k: ChainedAuditLog(e, hold_connection=True) for k, e in engines.items()}  # as the gateway
        n = 0
        for _ in range(4):
            for key in ("old", "new"):
                t = time.perf_counter()
                for _ in range(appends // 4):
                    n += 1
                    await sinks[key].record(
                        AccessEvent(
                            request_id=f"bench-{n}",
                            tier="open",
                            principal_kind="anonymous",
                            principal_id="10.0.0.7",
                            consumer=None,
                            client_address="10.0.0.7",
                            operation_name="Q",
                            operation_type="query",
                            query_digest="0" * 64,
                            status=200,
                            error_codes=[],
                            latency_ms=1.0,
                            fields=[{"dataset": "dataset_01", "field": "field_1", "decision": "allow"}],
                            reads=[{"dataset": "dataset_01", "rows": 1}],
                        )
                    )
                out[key]["append_us"].append(1e6 * (time.perf_counter() - t) / (appends // 4))
        for key, sink in sinks.items():
            await sink.aclose()
            report = await verify_chain(engines[key])
            assert report.ok, report
    finally:
        for engine in engines.values():
            await engine.dispose()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--appends", type=int, default=2000, help="events appended by the writer per layout")
    p.add_argument("--prune-months", type=int, default=1, help="prune the oldest K months at once")
    args = p.parse_args()
    now = datetime.now(UTC)
    first = month_after(now.year, now.month, -MONTHS)
    t0 = datetime(*first, 1, tzinfo=UTC)
    end = datetime(now.year, now.month, 1, tzinfo=UTC)  # 12 whole months before this one
    old_url, new_url = create(args.server, OLD, "0026"), create(args.server, NEW, "head")

    async def months() -> None:  # the migration made this month and three ahead; the past twelve:
        conn = await asyncpg.connect(new_url)
        try:
            for i in range(MONTHS):
                await conn.execute(MonthPartition.of(*month_after(*first, i)).create_sql())
        finally:
            await conn.close()

    asyncio.run(months())
    log(f"filling {args.events:,} events over {MONTHS} months ({t0:%Y-%m} .. {end:%Y-%m} exclusive)")
    started = time.monotonic()
    asyncio.run(fill([old_url, new_url], args.events, t0, end))
    fill_s = time.monotonic() - started
    oldest = MonthPartition.of(*month_after(*first, args.prune_months - 1))  # the newest month pruned

    async def last_seq() -> int:
        conn = await asyncpg.connect(new_url)
        try:
            return int(await conn.fetchval(f"SELECT max(seq) FROM {oldest.name}"))
        finally:
            await conn.close()

    through = asyncio.run(last_seq())
    cost = asyncio.run(costs({"old": old_url, "new": new_url}, args.appends))
    log(f"pruning the oldest {args.prune_months} month(s), through {oldest.name}: events 1..{through:,}")
    old = asyncio.run(prune(old_url, through, partitioned=False))
    log(f"DELETE: {old['commit_s']:.2f}s")
    new = asyncio.run(prune(new_url, through, partitioned=True))
    log(f"DROP PARTITION: {new['commit_s']:.2f}s ({new['dropped']})")
    assert old["first_left"] == new["first_left"] == through + 1

    def ratio(a: float, b: float) -> str:
        return f"{a / b:,.1f}x" if b > 0 else "-"

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    mb = 1024 * 1024
    print(
        f"\nRetention at scale: {args.events:,} events over {MONTHS} months; pruned the oldest "
        f"{args.prune_months} month(s), "
        f"{through:,} events (load average {os.getloadavg()[0]:.1f}, fill {fill_s:.0f}s)"
    )
    print(f"  {'':38s} {'DELETE (0026)':>14s} {'DROP (0027)':>14s} {'old/new':>9s}")
    v_old, v_new = mean(cost["old"]["verify_s"]), mean(cost["new"]["verify_s"])
    a_old, a_new = mean(cost["old"]["append_us"]), mean(cost["new"]["append_us"])
    label = "verify_chain, all events, s (mean of 2)"
    print(f"  {label:38s} {v_old:14.1f} {v_new:14.1f} {ratio(v_old, v_new):>9s}")
    print(
        f"  {'writer append, µs/event (mean of 4)':38s} {a_old:14.0f} {a_new:14.0f} {ratio(a_old, a_new):>9s}"
    )
    for key, label in (
        ("commit_s", "prune commit, s"),
        ("events_s", "  of which audit_event, s"),
        ("field_index_delete_s", "  of which audit_field_access DELETE, s"),
        ("vacuum_audit_event_s", "VACUUM audit_event after, s"),
        ("vacuum_field_index_s", "VACUUM audit_field_access after, s"),
    ):
        print(f"  {label:38s} {old[key]:14.3f} {new[key]:14.3f} {ratio(old[key], new[key]):>9s}")
    for key, label in (
        ("wal_events_bytes", "WAL, audit_event (and commit), MB"),
        ("wal_field_index_bytes", "WAL, audit_field_access DELETE, MB"),
    ):
        print(f"  {label:38s} {old[key] / mb:14.3f} {new[key] / mb:14.3f} {ratio(old[key], new[key]):>9s}")
    for part in (
        "audit_event heap",
        "audit_event indexes",
        "audit_field_access heap",
        "audit_field_access indexes",
    ):
        b_old, a_old, b_new, a_new = (
            old["before"][part],
            old["after"][part],
            new["before"][part],
            new["after"][part],
        )
        print(
            f"  {part + ' MB':38s} {b_old / mb:6.1f}→{a_old / mb:6.1f}  {b_new / mb:6.1f}→{a_new / mb:6.1f}"
        )
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    doc = {
        "costs": cost,
        "events": args.events,
        "prune_months": args.prune_months,
        "through": through,
        "fill_s": fill_s,
        "delete": old,
        "drop": new,
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loadavg": os.getloadavg(),
    }
    (out / f"audit-retention-{args.events}.json").write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
