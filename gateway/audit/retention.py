"""Retention: archive sealed segments of the chain to signed files, then prune them.

`archive_and_prune` writes the events from the oldest remaining one up to the latest checkpoint
as a signed archive (`checkpoints.export_archive`) to `<var_dir>/audit-archive/`, verifies the
file with the gateway's public key, and only then deletes those rows (and their index rows).
The checkpoint stays in `audit_checkpoint`: it is the anchor the remaining chain links to.

`verify_retained` spans the pruned range: every archive verifies and links to the one before it
(the first from genesis), the first remaining event links to the last archive's checkpointed
hash, the rest of the chain and the head hold, and every checkpoint is checked as usual."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import GENESIS_HASH, event_hash
from gateway.audit.checkpoints import (
    ArchiveReport,
    CheckpointReport,
    export_archive,
    latest_checkpoint,
    store_lookup,
    verify_archive,
    verify_with_checkpoints,
)
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent, AuditFieldAccess
from gateway.audit.verify import VerifyReport
from keys.keystore import KeyStore

EVENTS, HEAD, FIELD_ACCESS = AuditEvent.__table__, AuditChainHead.__table__, AuditFieldAccess.__table__


def archive_dir(var_dir: Path) -> Path:
    return var_dir / "audit-archive"


async def archive_and_prune(engine: AsyncEngine, store: KeyStore, directory: Path) -> Path | None:
    """Archive and prune everything up to the latest checkpoint; None when nothing is sealed."""
    async with engine.connect() as conn:
        first = (await conn.execute(select(func.min(EVENTS.c.seq)))).scalar()
        anchor = await latest_checkpoint(conn)
    if first is None or anchor is None or anchor.seq < int(first):
        return None
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"audit-{int(first):012d}-{anchor.seq:012d}.jsonl"
    tmp = target.with_suffix(".tmp")
    with tmp.open("wb") as sink:
        async for chunk in export_archive(engine, store, int(first), anchor.seq):
            sink.write(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    public = store_lookup(store)(anchor.kid)
    report = verify_archive(tmp.read_bytes(), public) if public else None
    if report is None or not report.ok:
        tmp.unlink()
        raise RuntimeError(f"archive did not verify, nothing pruned: {report and report.reason}")
    tmp.rename(target)
    async with engine.begin() as conn:
        await conn.execute(delete(FIELD_ACCESS).where(FIELD_ACCESS.c.seq <= anchor.seq))
        await conn.execute(delete(EVENTS).where(EVENTS.c.seq <= anchor.seq))
    return target


async def verify_retained(engine: AsyncEngine, store: KeyStore, directory: Path) -> CheckpointReport:
    lookup = store_lookup(store)
    prev, expected, checked = GENESIS_HASH, 1, 0
    for path in sorted(directory.glob("audit-*.jsonl")):
        data = path.read_bytes()
        kid = data.split(b'"kid":"', 1)[1][:16].decode() if b'"kid":"' in data else ""
        public = lookup(kid)
        report = verify_archive(data, public) if public else ArchiveReport(False, 0, reason="unknown key")
        if not report.ok or report.from_seq != expected or report.first_hash != prev:
            reason = report.reason or "archive does not link to the one before it"
            return CheckpointReport(False, checked, 0, expected, f"{path.name}: {reason}")
        checked += report.events
        prev, expected = str(report.last_hash), int(report.to_seq or 0) + 1
    chain = await _verify_from(engine, expected, prev, checked)
    return await verify_with_checkpoints(engine, store, chain)


async def _verify_from(engine: AsyncEngine, expected: int, prev: str, checked: int) -> VerifyReport:
    async with engine.connect() as conn:
        head = (await conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID))).first()
        q = select(EVENTS).order_by(EVENTS.c.seq).execution_options(yield_per=2000)
        async for row in (await conn.stream(q)).mappings():
            seq = int(row["seq"])
            if seq != expected:
                return VerifyReport(False, checked, expected,
                                    f"missing event: expected seq {expected}, found {seq}")
            if event_hash(row) != row["hash"] or row["prev_hash"] != prev:
                return VerifyReport(False, checked, seq, f"seq {seq}: chain broken")
            prev, expected, checked = row["hash"], expected + 1, checked + 1
    if head is None or int(head.seq) != expected - 1 or head.hash != prev:
        return VerifyReport(False, checked, expected - 1, "the chain head does not match the last event")
    return VerifyReport(True, checked)
