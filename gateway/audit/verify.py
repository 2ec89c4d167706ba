"""`verify_chain`: recompute the chain and report the first position where it breaks.

Checks, in seq order: seq is 1, 2, 3, ... with no gap (a deleted event); each row's hash equals
SM3 of its canonical bytes (an edited byte, a renumbered/swapped/inserted row); each prev_hash
equals the previous row's hash (a row rewritten *with* a recomputed hash shows up at the next
link); and finally the last event equals the chain head (a truncated or extended tail).

Limit: this is an unkeyed chain. Someone who can write the database and recomputes every hash
from the tampered row to the end, head included, is not caught here; that needs the head anchored
outside the database (signed checkpoints), which is a later step."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.chain import GENESIS_HASH, event_hash
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent

EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events_checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


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
    expected, prev_hash, checked = 1, GENESIS_HASH, 0
    result = await conn.stream(select(EVENTS).order_by(EVENTS.c.seq).execution_options(yield_per=batch))
    async for row in result.mappings():
        seq = int(row["seq"])
        if seq != expected:
            return VerifyReport(False, checked, expected,
                                f"missing event: expected seq {expected}, found {seq}")
        if event_hash(row) != row["hash"]:
            return VerifyReport(False, checked, seq, f"seq {seq}: content does not match its hash")
        if row["prev_hash"] != prev_hash:
            return VerifyReport(False, checked, seq,
                                f"seq {seq}: prev_hash does not match the hash of seq {seq - 1}")
        checked += 1
        prev_hash = row["hash"]
        expected += 1
    last = expected - 1
    head_seq, head_hash = (int(head.seq), str(head.hash)) if head else (0, GENESIS_HASH)
    if head_seq < last:
        return VerifyReport(False, checked, head_seq + 1,
                            f"events after the chain head (head is at seq {head_seq}, last event {last})")
    if head_seq > last:
        return VerifyReport(False, checked, last + 1,
                            f"events missing at the tail (head is at seq {head_seq}, last event {last})")
    if head_hash != prev_hash:
        return VerifyReport(False, checked, last, f"seq {last}: hash does not match the chain head")
    return VerifyReport(True, checked)
