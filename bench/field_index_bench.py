"""The officers' field index (audit_field_access) filled per 1,000 lookup events, on PostgreSQL:
the time of `field_index.index_pending` (what the gateway runs each second beside the request
path), the PostgreSQL backend's CPU for it, the index rows and bytes per event.

The events are the open tier's lookup as run_gateway_bench.py loads it: 9 fields of one dataset,
each allowed, and the read of that dataset. --events of them are appended with the gateway's own
writer (ChainedAuditLog, 50 at a time); the first --warm ones are indexed untimed, so the index
is not empty, then the rest in chunks of 1,000, timed.

Runs against whichever Shuqiao comes first on the path, so one script measures two revisions
(the API it uses, ChainedAuditLog, index_pending and gateway.db, is the same in both):

    .venv/bin/python bench/field_index_bench.py --code /work/main   # another checkout
    .venv/bin/python bench/field_index_bench.py                     # this one

It creates the database `field_index_bench` (dropped first) and drops it at the end."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from gateway.access_log import AccessEvent

DATASET = "pool_enterprise_registration"
OPEN_FIELDS = (
    *("credit_code", "name", "registered_capital", "establishment_date", "enterprise_type"),
    *("industry", "registered_address", "district", "status"),
)


def lookup_event(i: int) -> AccessEvent:
    from gateway.access_log import AccessEvent

    return AccessEvent(
        request_id=f"fill-{i}", tier="open", principal_kind="anonymous", principal_id="anonymous",
        consumer=None, client_address="127.0.0.1", operation_name="Lookup", operation_type="query",
        query_digest=f"{i % 7:064x}", status=200, error_codes=[], latency_ms=1.0,
        fields=[{"dataset": DATASET, "field": f, "action": "allow", "reason": "open"} for f in OPEN_FIELDS],
        reads=[{"dataset": DATASET, "rows": 1}],
    )  # fmt: skip


def backend_cpu(pid: int) -> float:
    """CPU seconds so far of one PostgreSQL backend (same machine)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def run(args: argparse.Namespace) -> None:
    from sqlalchemy import text

    from gateway.audit import ChainedAuditLog
    from gateway.audit.field_index import _index_chunk, index_pending
    from gateway.db import create_engine, upgrade

    server = args.database_url.rsplit("/", 1)[0]
    admin = await asyncpg.connect(server.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    await admin.execute("DROP DATABASE IF EXISTS field_index_bench WITH (FORCE)")
    await admin.execute("CREATE DATABASE field_index_bench")
    url = server + "/field_index_bench"
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url, pool_size=50)
        sink = ChainedAuditLog(engine)

        async def append(first: int, last: int) -> None:
            for start in range(first, last, 50):
                await asyncio.gather(
                    *(sink.record(lookup_event(i)) for i in range(start, min(last, start + 50)))
                )

        await append(0, args.warm)
        await index_pending(engine)  # untimed: the index is not empty when the timing starts
        await append(args.warm, args.events)
        await engine.dispose()
        engine = create_engine(url, pool_size=1)  # one backend: its CPU is the index's
        async with engine.connect() as conn:
            pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        times, cpus = [], []
        while True:
            cpu0, t0 = backend_cpu(pid), time.perf_counter()
            n = await _index_chunk(engine, 1000, each=False)
            if not n:
                break
            times.append((time.perf_counter() - t0) * 1e6 / n)  # ms per 1,000 events
            cpus.append((backend_cpu(pid) - cpu0) * 1e6 / n)
        await engine.dispose()
        raw = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        rows = await raw.fetchval("SELECT count(*) FROM audit_field_access")
        size = await raw.fetchval("SELECT pg_total_relation_size('audit_field_access')")
        head = await raw.fetchval("SELECT version_num FROM alembic_version")
        await raw.close()
        print(
            f"revision {head}: {len(times)} chunks of 1,000 events after {args.warm:,} indexed:"
            f" {statistics.median(times):.1f} ms per 1,000 (median;"
            f" min {min(times):.1f}, max {max(times):.1f}),"
            f" PostgreSQL backend CPU {sum(cpus) / len(cpus):.1f} ms per 1,000 (mean);"
            f" {rows / args.events:.2f} index rows and {size / args.events:.0f} bytes per event"
        )
    finally:
        await admin.execute("DROP DATABASE IF EXISTS field_index_bench WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--warm", type=int, default=20_000, help="events indexed before the timed ones")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    sys.path.insert(0, str(args.code))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
