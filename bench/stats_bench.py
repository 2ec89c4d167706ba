"""Public statistics at scale (gateway.portal.usage, docs/portal.md §Statistics): what the daily
rollup costs and what it saves, on SQLite and PostgreSQL.

    .venv/bin/python bench/stats_bench.py                        # 500,000 events, both backends
    .venv/bin/python bench/stats_bench.py --events 2000000 --backends postgres

A fresh database per backend (migrations applied), filled with `--events` synthetic audit events
over 90 days: 70 % open-tier calls reading one of `--datasets` datasets, 5 % completed downloads,
the rest share-tier reads and catalogue views (which count nothing). Then, in the same run:

  backfill      `roll_up_pending` from cursor 0 over every event (once per deployment): events/s
  increment     1,000 more events appended, rolled up: the background task's step
  caught up     a rollup with nothing new: the task's idle cost
  page, rollup  the /stats.json document for 90 days (`usage_report`): what a page view costs
  page, scan    the same figures computed from the audit table (every open-tier event of the
                90 days, tallied): the baseline a page view would cost without the rollup

and the ratio scan / rollup. The two documents are checked equal before anything is printed.
PostgreSQL at SHUQIAO_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select, update

from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent
from gateway.db import create_engine, upgrade
from gateway.portal.stats import PublicDataset, aggregate, stats_document, usage_report, window
from gateway.portal.usage import roll_up_pending, tally, today_cst
from gateway.settings import normalise_database_url

PG_ADMIN = os.environ.get("SHUQIAO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
EVENTS, HEAD = AuditEvent.__table__, AuditChainHead.__table__
BATCH = 10_000


def _event(seq: int, at: datetime, rng: random.Random, datasets: list[str]) -> dict[str, Any]:
    roll = rng.random()
    ds = datasets[min(int(rng.paretovariate(1.2)) - 1, len(datasets) - 1)]  # a few datasets used most
    tier, op, status, reads = "open", None, 200, [{"dataset": ds, "rows": 20}]
    if roll < 0.05:
        op, reads = "download.end", [{"dataset": ds, "rows": 5000, "bytes": 250_000, "format": "csv"}]
    elif roll < 0.75:
        pass
    elif roll < 0.9:
        tier = "share"
    else:
        op, reads = "explorer.catalogue", []
    return {
        "seq": seq,
        "occurred_at": at,
        "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "tier": tier,
        "principal_kind": "anonymous",
        "principal_id": "anonymous",
        "operation_name": op,
        "status": status,
        "error_codes": "[]",
        "latency_ms": 3.0,
        "detail": orjson.dumps({"fields": [], "reads": reads}).decode(),
        "prev_hash": "0" * 64,
        "hash": "0" * 64,
    }


async def _append(
    engine: Any, start: int, count: int, now: datetime, rng: random.Random, datasets: list[str]
) -> int:
    span = timedelta(days=90).total_seconds()
    seq = start
    async with engine.begin() as conn:
        while seq < start + count:
            n = min(BATCH, start + count - seq)
            rows = [
                _event(
                    seq + i + 1,
                    now - timedelta(seconds=span * (1 - (seq + i) / (start + count))),
                    rng,
                    datasets,
                )
                for i in range(n)
            ]
            await conn.execute(EVENTS.insert(), rows)
            seq += n
        moved = await conn.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(seq=seq))
        if moved.rowcount == 0:
            await conn.execute(HEAD.insert().values(id=HEAD_ID, seq=seq, hash="0" * 64))
    return seq


async def _scan_document(
    engine: Any, listing: list[PublicDataset], days: int, now: datetime
) -> dict[str, Any]:
    """The baseline: the same document from the audit table itself."""
    span = window(days, today_cst(now))
    since = datetime(span[0].year, span[0].month, span[0].day, tzinfo=UTC) - timedelta(hours=8)
    q = select(EVENTS.c.occurred_at, EVENTS.c.operation_name, EVENTS.c.status, EVENTS.c.detail).where(
        EVENTS.c.occurred_at >= since, EVENTS.c.tier == "open", EVENTS.c.status < 400
    )
    async with engine.connect() as conn:
        counts = tally(await conn.execute(q))
    per_dataset, per_day = aggregate(
        {k: c for k, c in counts.items() if k[1] >= span[0]}, {d.code for d in listing}
    )
    return stats_document(listing, span, per_dataset, per_day, now)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def bench(backend: str, events: int, n_datasets: int, tmp: Path) -> dict[str, Any]:
    name = f"shuqiao_stats_bench_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'stats.db'}"
    else:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        url = normalise_database_url(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
    try:
        upgrade(url)
        rng = random.Random(17)
        datasets = [f"dataset_{i:04d}" for i in range(n_datasets)]
        listing = [
            PublicDataset(d, f"数据集{i}", "", f"R{i:05d}", "部门", False, datetime(2026, 1, 1, tzinfo=UTC))
            for i, d in enumerate(datasets)
        ]
        now = datetime.now(UTC)

        async def run() -> dict[str, Any]:
            engine = create_engine(url)
            try:
                t = time.perf_counter()
                head = await _append(engine, 0, events, now, rng, datasets)
                fill = time.perf_counter() - t
                t = time.perf_counter()
                counted = await roll_up_pending(engine)
                backfill = time.perf_counter() - t
                await _append(engine, head, 1000, now, rng, datasets)
                t = time.perf_counter()
                await roll_up_pending(engine)
                increment = time.perf_counter() - t
                t = time.perf_counter()
                await roll_up_pending(engine)
                idle = time.perf_counter() - t
                rollup_docs, scan_docs = [], []
                page_t, scan_t = [], []
                for _ in range(5):
                    t = time.perf_counter()
                    rollup_docs.append(await usage_report(engine, listing, 90, now))
                    page_t.append(time.perf_counter() - t)
                for _ in range(3):
                    t = time.perf_counter()
                    scan_docs.append(await _scan_document(engine, listing, 90, now))
                    scan_t.append(time.perf_counter() - t)
                a, b = rollup_docs[-1], scan_docs[-1]
                assert (a["datasets"], a["daily"], a["top"]) == (b["datasets"], b["daily"], b["top"]), (
                    "differ"
                )
                return {
                    "backend": backend,
                    "events": counted,
                    "fill_s": fill,
                    "backfill_s": backfill,
                    "backfill_per_s": counted / backfill,
                    "increment_ms": increment * 1000,
                    "idle_ms": idle * 1000,
                    "page_ms": statistics.median(page_t) * 1000,
                    "scan_ms": statistics.median(scan_t) * 1000,
                }
            finally:
                await engine.dispose()

        return asyncio.run(run())
    finally:
        if backend == "postgres":
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    print(
        f"{args.events:,} audit events over 90 days, {args.datasets} open datasets; /stats.json for 90 days"
    )
    head = (
        "backend",
        "backfill",
        "events/s",
        "increment",
        "caught up",
        "page rollup",
        "page scan",
        "scan/rollup",
    )
    print(" | ".join(head))
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            r = bench(backend, args.events, args.datasets, Path(tmp))
        print(
            f"{r['backend']} | {r['backfill_s']:.1f} s | {r['backfill_per_s']:,.0f} | "
            f"{r['increment_ms']:.1f} ms | "
            f"{r['idle_ms']:.1f} ms | {r['page_ms']:.1f} ms | {r['scan_ms']:,.0f} ms | "
            f"{r['scan_ms'] / r['page_ms']:,.0f}x"
        )


if __name__ == "__main__":
    main()
