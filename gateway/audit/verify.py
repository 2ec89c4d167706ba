"""`verify_chain`: recompute the chain and report the first position where it breaks.

Checks, in seq order: seq is 1, 2, 3, ... with no gap (a deleted event); each row's hash equals
SM3 of its canonical bytes (an edited byte, a renumbered/swapped/inserted row); each prev_hash
equals the previous row's hash (a row rewritten *with* a recomputed hash shows up at the next
link); and finally the last event equals the chain head (a truncated or extended tail).

After a retention prune (gateway.audit.retention) the chain starts after the latest prune anchor
(through_seq K, hash of event K): the first event expected is K+1 and it must link to the anchor's
hash. The anchor must equal the signed checkpoint kept at K (an edited anchor is caught there), and
no event at or below K may remain. Deleting the latest anchor row falls back to the one before,
whose successor is gone: reported as missing events.

On PostgreSQL the walk runs on asyncpg's records with the canonical bytes built from sorted columns,
and with `workers` > 1 in seq ranges, one worker process each, in this transaction's exported
snapshot; `verify_ranges.join` puts the ranges back together into the report one walk gives.

Limit: this is an unkeyed chain. Someone who can write the database and recomputes every hash
from the tampered row to the end, head included, is not caught here; signed checkpoints
(`verify_with_checkpoints`) catch that."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.chain import GENESIS_HASH, event_hash
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditCheckpoint, AuditEvent, AuditPruneAnchor
from gateway.audit.verify_ranges import (
    MAX_SEQ,
    PAGE,
    VERIFY_COLUMNS,
    RangeResult,
    content_mismatch,
    join,
    link_mismatch,
    missing,
    pruned_remains,
    verify_range,
)
from gateway.db import table_of

EVENTS = table_of(AuditEvent)
HEAD = table_of(AuditChainHead)
CHECKPOINTS = table_of(AuditCheckpoint)
ANCHORS = table_of(AuditPruneAnchor)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events_checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    pruned_through: int | None = None  # events 1..this were archived and pruned (the anchor)

    def to_json(self) -> dict[str, Any]:
        """The JSON report (CLI --json, GET /audit/api/verify); pruned_through only after a prune."""
        doc = asdict(self)
        if self.pruned_through is None:
            del doc["pruned_through"]
        return doc


@dataclass(frozen=True)
class Anchor:
    through_seq: int
    hash: str
    archive: str
    archive_sm3: str


async def latest_anchor(conn: AsyncConnection) -> Anchor | None:
    """The newest prune anchor, None if the chain was never pruned (with anchors)."""
    q = select(ANCHORS).order_by(ANCHORS.c.through_seq.desc()).limit(1)
    row = (await conn.execute(q)).first()
    if row is None:
        return None
    return Anchor(int(row.through_seq), str(row.hash), str(row.archive), str(row.archive_sm3))


async def anchor_problem(conn: AsyncConnection, anchor: Anchor) -> str | None:
    """The anchor must equal the signed checkpoint prune kept at its seq; None when it does."""
    signed = (
        await conn.execute(select(CHECKPOINTS.c.hash).where(CHECKPOINTS.c.seq == anchor.through_seq))
    ).scalar()
    if signed is None:
        return f"prune anchor at seq {anchor.through_seq}: no signed checkpoint at its seq"
    if signed != anchor.hash:
        return f"prune anchor at seq {anchor.through_seq}: hash differs from the signed checkpoint"
    return None


async def verify_chain(
    engine: AsyncEngine, *, batch: int = 2000, workers: int = 1, min_range: int | None = None
) -> VerifyReport:
    """The chain check. On PostgreSQL with `workers` > 1 the seq span is split between up to that
    many worker processes (at least `min_range` events each, default MIN_RANGE), all in this
    transaction's snapshot; the report is the one a single walk would give
    (gateway/audit/verify_ranges.py). SQLite: one walk in this process."""
    async with engine.connect() as conn:
        # One snapshot for the head and all events, so concurrent appends don't look like damage.
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN")
        else:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            return await _verify(conn, batch, workers, min_range or MIN_RANGE)
        finally:
            await conn.rollback()


async def _verify(conn: AsyncConnection, batch: int, workers: int, min_range: int) -> VerifyReport:
    head = (await conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID))).first()
    anchor = await latest_anchor(conn)
    pruned = anchor.through_seq if anchor else None

    def bad(checked: int, seq: int, reason: str) -> VerifyReport:
        return VerifyReport(False, checked, seq, reason, pruned)

    if anchor is not None and (problem := await anchor_problem(conn, anchor)):
        return bad(0, anchor.through_seq, problem)
    head_seq, head_hash = (int(head.seq), str(head.hash)) if head else (0, GENESIS_HASH)
    start, genesis = (pruned or 0) + 1, (anchor.hash if anchor else GENESIS_HASH)
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "asyncpg":
        ranges = await _pg_ranges(
            conn, start, genesis, pruned, head_seq, workers, min_range, max(batch, PAGE)
        )
    else:
        ranges = [await _walk(conn, batch, start, genesis, pruned)]
    walked = join(ranges, start, genesis, pruned)
    if walked.bad is not None:
        return bad(*walked.bad)
    checked, prev_hash, last = walked.checked, walked.prev, walked.expected - 1
    where = f"(head is at seq {head_seq}, last event {last})"
    if head_seq < last:
        return bad(checked, head_seq + 1, f"events after the chain head {where}")
    if head_seq > last:
        return bad(checked, last + 1, f"events missing at the tail {where}")
    if head_hash != prev_hash:
        return bad(checked, last, f"seq {last}: hash does not match the chain head")
    return VerifyReport(True, checked, pruned_through=pruned)


async def _walk(
    conn: AsyncConnection, batch: int, expected: int, prev: str, pruned: int | None
) -> RangeResult:
    """Every event in seq order through SQLAlchemy (SQLite, other drivers), hashed by the writer's
    own function: the whole chain as one range."""
    checked, first_seq, first_prev, last = 0, None, None, None

    def result(bad_seq: int | None = None, reason: str | None = None) -> RangeResult:
        last_seq = None if last is None else int(last["seq"])
        return RangeResult(checked, first_seq, first_prev, last_seq, prev, bad_seq, reason)

    columns = [EVENTS.c[name] for name in VERIFY_COLUMNS]
    stream = await conn.stream(select(*columns).order_by(EVENTS.c.seq).execution_options(yield_per=batch))
    try:
        async for rows in stream.mappings().partitions():
            for row in rows:
                seq = int(row["seq"])
                if first_seq is None:
                    first_seq, first_prev = seq, row["prev_hash"]
                if pruned is not None and seq <= pruned:
                    return result(seq, pruned_remains(seq, pruned))
                if seq != expected:
                    return result(expected, missing(expected, seq))
                if event_hash(row) != row["hash"]:
                    return result(seq, content_mismatch(seq))
                if row["prev_hash"] != prev:
                    return result(seq, link_mismatch(seq, pruned))
                checked += 1
                prev, last = row["hash"], row
                expected += 1
    finally:
        await stream.close()
    return result()


MIN_RANGE = 50_000  # events per worker process, below which starting one costs more than it saves


async def _pg_ranges(
    conn: AsyncConnection,
    start: int,
    genesis: str,
    pruned: int | None,
    head_seq: int,
    workers: int,
    min_range: int,
    page: int,
) -> list[RangeResult]:
    """The chain in `workers` ranges of the seq span up to the head (the last one open-ended, so
    events past the head are walked too), each in a worker process that imports this
    transaction's snapshot; with one range, here on this connection."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    base = pruned or 0
    k = max(1, min(workers, (head_seq - base) // min_range))
    if k == 1:
        return [await verify_range(raw, 0, MAX_SEQ, start, genesis, pruned, page)]
    snapshot = await raw.fetchval("SELECT pg_export_snapshot()")
    bounds = [0, *(base + (head_seq - base) * i // k for i in range(1, k)), MAX_SEQ]
    url = conn.engine.url
    query = {name: v for name, v in url.query.items() if name in _DSN_QUERY}  # not SQLAlchemy's own options
    dsn = url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    jobs = [
        {
            "dsn": dsn,
            "snapshot": snapshot,
            "lo": bounds[i],
            "hi": bounds[i + 1],
            "expected": start if i == 0 else bounds[i] + 1,
            "prev": genesis if i == 0 else None,  # the others' first links are checked by join
            "pruned": pruned,
            "page": page,
        }
        for i in range(k)
    ]
    try:
        return await _run_workers(jobs)
    except VerifyWorkerError as err:
        # the workers were handed the DSN with its password: a driver error may echo it
        if url.password and url.password in str(err):
            raise VerifyWorkerError(str(err).replace(url.password, "***")) from None
        raise


# What asyncpg's DSN takes besides host, port, user, password and database.
_DSN_QUERY = frozenset(
    {
        "host",
        "port",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "target_session_attrs",
    }
)


class VerifyWorkerError(RuntimeError):
    pass


async def _run_workers(jobs: list[dict[str, Any]]) -> list[RangeResult]:
    """One `python -m gateway.audit.verify_ranges` per job (the job on its stdin), all at once."""
    root = str(Path(__file__).resolve().parents[2])  # where `gateway` is importable from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in jobs:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "gateway.audit.verify_ranges",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
            )
        outputs = await asyncio.gather(
            *(p.communicate(json.dumps(job).encode()) for p, job in zip(procs, jobs, strict=True))
        )
    finally:
        for p in procs:
            if p.returncode is None:  # cancelled, or another worker failed: stop this one too
                p.kill()
                await p.wait()
    results = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise VerifyWorkerError(f"audit verify worker exited with {p.returncode}: {tail[0]}")
        results.append(RangeResult(**json.loads(out)))
    return results
