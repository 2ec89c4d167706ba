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

Limit: this is an unkeyed chain. Someone who can write the database and recomputes every hash
from the tampered row to the end, head included, is not caught here; signed checkpoints
(`verify_with_checkpoints`) catch that."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.chain import EXTENSION_COLUMNS, GENESIS_HASH, HASHED_COLUMNS, event_hash
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditCheckpoint, AuditEvent, AuditPruneAnchor

EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__
CHECKPOINTS = AuditCheckpoint.__table__
ANCHORS = AuditPruneAnchor.__table__


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


async def verify_chain(engine: AsyncEngine, *, batch: int = 2000) -> VerifyReport:
    async with engine.connect() as conn:
        # One snapshot for the head and all events, so concurrent appends don't look like damage.
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN")
        else:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            return await _verify(conn, batch)
        finally:
            await conn.rollback()


async def _verify(conn: AsyncConnection, batch: int) -> VerifyReport:
    head = (await conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID))).first()
    anchor = await latest_anchor(conn)
    pruned = anchor.through_seq if anchor else None

    def bad(checked: int, seq: int, reason: str) -> VerifyReport:
        return VerifyReport(False, checked, seq, reason, pruned)

    if anchor is not None and (problem := await anchor_problem(conn, anchor)):
        return bad(0, anchor.through_seq, problem)
    expected = (pruned or 0) + 1
    prev_hash, checked = (anchor.hash if anchor else GENESIS_HASH), 0
    async with contextlib.aclosing(_event_batches(conn, batch)) as batches:
        async for rows in batches:
            for row in rows:
                seq = int(row["seq"])
                if pruned is not None and seq <= pruned:
                    return bad(
                        checked, seq, f"seq {seq}: event remains in the range pruned through seq {pruned}"
                    )
                if seq != expected:
                    return bad(checked, expected, f"missing event: expected seq {expected}, found {seq}")
                if event_hash(row) != row["hash"]:
                    return bad(checked, seq, f"seq {seq}: content does not match its hash")
                if row["prev_hash"] != prev_hash:
                    link = f"the prune anchor at seq {pruned}" if seq - 1 == pruned else f"seq {seq - 1}"
                    return bad(checked, seq, f"seq {seq}: prev_hash does not match the hash of {link}")
                checked += 1
                prev_hash = row["hash"]
                expected += 1
    last = expected - 1
    head_seq, head_hash = (int(head.seq), str(head.hash)) if head else (0, GENESIS_HASH)
    where = f"(head is at seq {head_seq}, last event {last})"
    if head_seq < last:
        return bad(checked, head_seq + 1, f"events after the chain head {where}")
    if head_seq > last:
        return bad(checked, last + 1, f"events missing at the tail {where}")
    if head_hash != prev_hash:
        return bad(checked, last, f"seq {last}: hash does not match the chain head")
    return VerifyReport(True, checked, pruned_through=pruned)


# What verification reads: the hashed columns and the stored hash, nothing else.
VERIFY_COLUMNS: tuple[str, ...] = (*HASHED_COLUMNS, *EXTENSION_COLUMNS, "hash")
PG_PAGE = f"SELECT {', '.join(VERIFY_COLUMNS)} FROM {EVENTS.name} WHERE seq > $1 ORDER BY seq LIMIT $2"  # noqa: S608


async def _event_batches(conn: AsyncConnection, batch: int) -> AsyncIterator[Sequence[Mapping[str, Any]]]:
    """Every event in seq order, a batch at a time, inside the caller's snapshot.

    PostgreSQL (asyncpg): keyset pages of the verified columns straight from the driver (its
    records, decoded in C, are mappings), the next page already on its way while this one is
    hashed. SQLAlchemy's row processing was most of the verifier's time. Other drivers: a
    streamed SQLAlchemy result."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "asyncpg":
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        size = max(batch, 10_000)
        page: asyncio.Future[list[Any]] | None = asyncio.ensure_future(raw.fetch(PG_PAGE, 0, size))
        try:
            while page is not None:
                rows = await page
                page = None
                if len(rows) == size:  # more may follow: ask for them before hashing these
                    page = asyncio.ensure_future(raw.fetch(PG_PAGE, rows[-1]["seq"], size))
                yield rows
        finally:
            if page is not None:  # stopped early (a break found): let the driver finish its query
                with contextlib.suppress(Exception):
                    await page
        return
    columns = [EVENTS.c[name] for name in VERIFY_COLUMNS]
    result = await conn.stream(select(*columns).order_by(EVENTS.c.seq).execution_options(yield_per=batch))
    async for part in result.mappings().partitions():
        yield part
