"""The audit writer alone: CPU per appended event, of this process and of PostgreSQL.

`ChainedAuditLog` (the gateway's writer, `hold_connection=True`, uvloop) appends synthetic
open-tier lookup events (ten field decisions, one read, sealed variables) in batches of B
concurrent `record()` calls: each batch is one transaction, as under B requests in flight. For
each B it prints events/s, this process's CPU (µs per event: the writer, plus the loop's and the
callers' share of a burst) and PostgreSQL's (every `postgres` process, from /proc: the backend,
the WAL writer), and the wall time per batch.

    .venv/bin/python bench/audit_append_bench.py                      # batches 1,2,4,16; 4000 events each
    .venv/bin/python bench/audit_append_bench.py --batches 1,2 --events 8000 --rounds 3
    .venv/bin/python bench/audit_append_bench.py --reuse                # keep the database of the last run

It makes the database `audit_append_bench` (migrated to head) on --server, unless --reuse.
PostgreSQL's CPU is the whole server's: run it on a quiet machine (`flock /tmp/bench.lock …`
where benchmarks share one), and compare figures of one run."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import uvloop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.access_log import AccessEvent  # noqa: E402
from gateway.audit.store import ChainedAuditLog  # noqa: E402
from gateway.audit.variables import VariableCipher  # noqa: E402
from gateway.db import create_engine  # noqa: E402

NAME = "audit_append_bench"


def postgres_cpu() -> float:
    """CPU seconds of every postgres process (user + system)."""
    total = 0
    for pid in subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout.split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def event() -> AccessEvent:
    return AccessEvent(
        request_id=uuid.uuid4().hex,
        tier="open",
        principal_kind="anonymous",
        principal_id="anonymous",
        consumer=None,
        client_address="127.0.0.1",
        operation_name="Lookup",
        operation_type="query",
        query_digest="ab" * 32,
        status=200,
        error_codes=[],
        latency_ms=1.234,
        fields=[{"dataset": "enterprise_registration", "field": f"f{i}", "action": "allow"} for i in range(9)]
        + [{"dataset": "enterprise_registration", "field": "contactPhone", "action": "deny"}],
        reads=[{"dataset": "enterprise_registration", "rows": 1}],
        variables={"code": "91610300MA68DYKG7U"},
    )


def create(server: str) -> str:
    async def go() -> None:
        admin = await asyncpg.connect(f"{server}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{NAME}"')
        finally:
            await admin.close()

    asyncio.run(go())
    url = f"{server}/{NAME}".replace("postgresql://", "postgresql+asyncpg://")
    code = "from gateway.db import upgrade; import os; upgrade(os.environ['URL'])"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "URL": url}, check=True, cwd=REPO)
    return url


async def one(url: str, batch: int, events: int) -> dict[str, float]:
    engine = create_engine(url)
    log = ChainedAuditLog(engine, VariableCipher(bytes(range(16))), hold_connection=True)
    try:
        for _ in range(20):  # connection, prepared statements, the anchored head
            await asyncio.gather(*(log.record(event()) for _ in range(batch)))
        n = max(1, events // batch)
        cpu0, pg0, t0, b0 = time.process_time(), postgres_cpu(), time.perf_counter(), log.batches
        for _ in range(n):
            await asyncio.gather(*(log.record(event()) for _ in range(batch)))
        cpu1, pg1, t1 = time.process_time(), postgres_cpu(), time.perf_counter()
        assert log.batches - b0 == n, "each burst should be one transaction"
        k = n * batch
        return {
            "events_per_s": k / (t1 - t0),
            "py_us": 1e6 * (cpu1 - cpu0) / k,
            "pg_us": 1e6 * (pg1 - pg0) / k,
            "wall_ms_per_batch": 1e3 * (t1 - t0) / n,
        }
    finally:
        await log.aclose()
        await engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--batches", default="1,2,4,16")
    ap.add_argument("--events", type=int, default=4000, help="events per batch size and round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--reuse", action="store_true", help="keep the database of the last run")
    args = ap.parse_args()
    url = f"{args.server}/{NAME}".replace("postgresql://", "postgresql+asyncpg://")
    if not args.reuse:
        url = create(args.server)
    uvloop.install()
    for r in range(args.rounds):
        for b in [int(x) for x in args.batches.split(",")]:
            m = asyncio.run(one(url, b, args.events))
            print(
                f"round {r + 1} batch {b:3d}: {m['events_per_s']:7.0f} events/s, "
                f"writer process {m['py_us']:5.0f} µs/event, PostgreSQL {m['pg_us']:5.0f} µs/event, "
                f"{m['wall_ms_per_batch']:.2f} ms/batch",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
