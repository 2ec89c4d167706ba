"""Retention: archive sealed segments of the chain to signed files, then prune them.

`archive_and_prune` writes the events after the latest prune anchor up to a checkpoint (the latest,
or the newest one at or below `through_seq` / whose event is older than `older_than`) as a signed
archive (`checkpoints.export_archive`) to `<var_dir>/audit-archive/`, verifies the file with the
gateway's public key and that it links to the anchor, and only then, in one transaction, records a
new prune anchor (through_seq, hash, archive name and SM3) and deletes those rows (and their index
rows). The checkpoint stays in `audit_checkpoint`; `verify_chain` starts after the anchor.

Several workers may prune at once: the anchor's from_seq is unique, so of two prunes planned from
the same anchor only one inserts it; the other's transaction fails, deletes nothing, and its
temporary file is removed. The winner renames its file into place while its anchor insert holds
the lock, so a loser never touches the winner's archive.

`verify_retained` spans the pruned range: every archive verifies, matches its anchor's SM3 and
range, and links to the one before it (the first from genesis), the first remaining event links to
the last archive's checkpointed hash, the rest of the chain and the head hold, and every checkpoint
is checked as usual. `RetentionTask` prunes events older than N days in the background."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.background import PeriodicTask
from gateway.audit.chain import GENESIS_HASH, event_hash
from gateway.audit.checkpoints import (
    ANCHORS,
    CHECKPOINTS,
    ArchiveReport,
    Checkpoint,
    CheckpointError,
    CheckpointReport,
    export_archive,
    store_lookup,
    verify_archive,
    verify_with_checkpoints,
    write_checkpoint,
)
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent, AuditFieldAccess
from gateway.audit.partitions import (
    DEFAULT,
    LOCK_TIMEOUT,
    PARENT,
    MonthPartition,
    attached,
    is_partitioned,
    month_partitions,
)
from gateway.audit.verify import Anchor, VerifyReport, latest_anchor
from gateway.db import table_of
from keys.keystore import KeyStore
from keys.sm3 import sm3

log = logging.getLogger("shuqiao.audit")

EVENTS, HEAD, FIELD_ACCESS = table_of(AuditEvent), table_of(AuditChainHead), table_of(AuditFieldAccess)


class RetentionError(RuntimeError):
    pass


def archive_dir(var_dir: Path) -> Path:
    return var_dir / "audit-archive"


@dataclass(frozen=True)
class _Plan:
    from_seq: int
    through: Checkpoint
    prev_hash: str | None  # what event from_seq must link to (None: a legacy prune, unknown)
    after: int  # the latest anchor's through_seq when planned (0: none)


async def archive_and_prune(
    engine: AsyncEngine,
    store: KeyStore,
    directory: Path,
    *,
    through_seq: int | None = None,
    older_than: datetime | None = None,
) -> Path | None:
    """Archive and prune up to the newest checkpoint within the bounds; None when nothing is sealed
    there or another worker pruned the range first. Raises RetentionError when the segment does
    not verify (nothing is deleted then)."""
    async with engine.connect() as conn:
        # read once per prune: a concurrent prune after this is caught at the commit (the unique
        # from_seq) or by its archive, which then no longer covers the plan (_lost_race)
        anchor = await latest_anchor(conn)
        month_end = await _whole_months(conn, anchor, through_seq, older_than)
    if month_end is not None:  # PostgreSQL's partitions: up to the end of a month, whole
        if month_end == 0:
            return None
        try:
            await write_checkpoint(engine, store, month_end)  # the existing one if there is one
        except CheckpointError as err:
            raise RetentionError(f"nothing pruned: {err}") from None
        through_seq, older_than = month_end, None
    async with engine.connect() as conn:
        plan = await _plan(conn, anchor, through_seq, older_than)
    if plan is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"audit-{plan.from_seq:012d}-{plan.through.seq:012d}.jsonl"
    tmp = directory / f".{target.name}.{uuid.uuid4().hex}.tmp"  # per attempt: workers never share it
    try:
        data = await _write(engine, store, plan, tmp)
        problem = _archive_problem(data, store, plan)
        if problem:
            if await _lost_race(engine, plan):
                return None
            raise RetentionError(f"archive did not verify, nothing pruned: {problem}")
        return await _commit(engine, plan, tmp, target, sm3(data).hex())
    finally:
        tmp.unlink(missing_ok=True)


async def _plan(
    conn: AsyncConnection, anchor: Anchor | None, through_seq: int | None, older_than: datetime | None
) -> _Plan | None:
    first = (await conn.execute(select(func.min(EVENTS.c.seq)))).scalar()
    if first is None:
        return None
    start = anchor.through_seq + 1 if anchor else int(first)
    if int(first) < start:  # pruning now would erase the evidence
        raise RetentionError(f"seq {first}: an event remains below the prune anchor at seq {start - 1}")
    q = select(CHECKPOINTS).where(CHECKPOINTS.c.seq >= start).order_by(CHECKPOINTS.c.seq.desc()).limit(1)
    if through_seq is not None:
        q = q.where(CHECKPOINTS.c.seq <= through_seq)
    if older_than is not None:  # the checkpointed event's own time: that is what becomes old
        q = q.join(EVENTS, EVENTS.c.seq == CHECKPOINTS.c.seq).where(
            EVENTS.c.occurred_at < older_than.astimezone(UTC)
        )
    row = (await conn.execute(q)).first()
    if row is None:
        return None
    after = anchor.through_seq if anchor else 0
    return _Plan(start, Checkpoint.from_row(row), await _link(conn, anchor, start), after)


async def _whole_months(
    conn: AsyncConnection, anchor: Anchor | None, through_seq: int | None, older_than: datetime | None
) -> int | None:
    """Pruning by age on a partitioned table goes by whole months: the last seq S of the newest
    month partition whose whole range is older than `older_than` and that still holds events,
    provided every event up to S is that old (none at or after the cutoff has a seq below S:
    seq follows time up to the seconds a month boundary may interleave) and S is within
    `through_seq`. Returns S; 0 when nothing older than the cutoff's own month is left (it goes
    whole once all of it is that old); None — prune up to the newest checkpoint that old, as on
    SQLite (the months it covers still drop whole) — when this does not apply: not partitioned, no
    age given, a cutoff in the current month (a retention shorter than the month so far), or old
    events that cannot go by whole months (held back by `through_seq`, out of order, or in the
    default partition)."""
    if older_than is None or not await is_partitioned(conn):
        return None
    cutoff = older_than.astimezone(UTC)
    now = datetime.now(UTC)
    if cutoff >= MonthPartition.of(now.year, now.month).start:
        return None
    after = anchor.through_seq if anchor else 0
    young = (
        await conn.execute(select(func.min(EVENTS.c.seq)).where(EVENTS.c.occurred_at >= cutoff))
    ).scalar()
    stray = (
        await conn.execute(
            text(f"SELECT 1 FROM {DEFAULT} WHERE occurred_at < :c AND seq > :a LIMIT 1"),  # noqa: S608
            {"c": cutoff, "a": after},
        )
    ).first()
    best, pending = 0, stray is not None
    for month in await month_partitions(conn):
        if month.end > cutoff:
            break
        top = (await conn.execute(text(f"SELECT max(seq) FROM {month.name}"))).scalar()  # noqa: S608
        if top is None or int(top) <= after:
            continue
        pending = True
        if (through_seq is None or int(top) <= through_seq) and (young is None or int(top) < int(young)):
            best = max(best, int(top))
    if best:
        return best
    return None if pending else 0


async def _link(conn: AsyncConnection, anchor: Anchor | None, start: int) -> str | None:
    if anchor is not None:
        return anchor.hash
    if start == 1:
        return GENESIS_HASH
    # Pruned before anchors existed (migration 0009): that prune kept its checkpoint at start - 1.
    return (await conn.execute(select(CHECKPOINTS.c.hash).where(CHECKPOINTS.c.seq == start - 1))).scalar()


async def _write(engine: AsyncEngine, store: KeyStore, plan: _Plan, tmp: Path) -> bytes:
    with tmp.open("wb") as sink:
        async for chunk in export_archive(engine, store, plan.from_seq, plan.through.seq):
            sink.write(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    return tmp.read_bytes()


def _archive_problem(data: bytes, store: KeyStore, plan: _Plan) -> str | None:
    public = store_lookup(store)(plan.through.kid)
    if public is None:
        return f"unknown signing key {plan.through.kid}"
    report = verify_archive(data, public)
    if not report.ok:
        return report.reason
    if (report.from_seq, report.to_seq) != (plan.from_seq, plan.through.seq):
        return "the archive does not cover the planned range"
    if plan.prev_hash is not None and report.first_hash != plan.prev_hash:
        return f"seq {plan.from_seq} does not link to the prune anchor"
    return None


async def _lost_race(engine: AsyncEngine, plan: _Plan) -> bool:
    async with engine.connect() as conn:
        anchor = await latest_anchor(conn)
    return (anchor.through_seq if anchor else 0) != plan.after


async def _commit(engine: AsyncEngine, plan: _Plan, tmp: Path, target: Path, digest: str) -> Path | None:
    anchor = {
        "through_seq": plan.through.seq,
        "from_seq": plan.from_seq,
        "hash": plan.through.hash,
        "archive": target.name,
        "archive_sm3": digest,
        "pruned_at": datetime.now(UTC),
    }
    renamed = False
    dropped: list[str] = []
    try:
        async with engine.begin() as conn:
            # First statement, so on SQLite it takes the write lock before reading anything. A
            # concurrent prune from the same anchor blocks here, then fails on the unique from_seq.
            await conn.execute(insert(ANCHORS).values(**anchor))
            await conn.execute(delete(FIELD_ACCESS).where(FIELD_ACCESS.c.seq <= plan.through.seq))
            if await is_partitioned(conn):
                dropped = await _prune_partitions(conn, plan.through.seq)
            else:
                await conn.execute(delete(EVENTS).where(EVENTS.c.seq <= plan.through.seq))
            os.replace(tmp, target)  # still holding the anchor: no other worker writes this name now
            renamed = True
            _fsync_dir(target.parent)
    except IntegrityError:
        if renamed:  # the commit itself failed: no anchor names this file
            target.unlink(missing_ok=True)
        return None
    except BaseException:
        if renamed and not await _anchored(engine, target.name):
            target.unlink(missing_ok=True)
        raise
    if dropped:
        log.info("audit retention: dropped partitions %s (events through seq %d)", dropped, plan.through.seq)
    return target


async def _prune_partitions(conn: AsyncConnection, through: int) -> list[str]:
    """Delete events 1..through from a partitioned audit_event, in the prune's transaction: a
    closed month partition holding only such events (or none, in a month the pruned range has
    passed) is detached and dropped; the others lose their rows at or below `through` by DELETE
    (seq is assigned at append and occurred_at just before, so at a month's boundary the next
    month may hold a few events of the range, and the default partition any). Deletes first,
    drops last: dropping locks the parent table, which stops the writer's appends until the prune
    commits, so that lock is held as briefly as possible, and waited for at most LOCK_TIMEOUT (a
    long reader, a verify, holds it off): then those months are emptied by DELETE instead, and
    dropped, empty, by a later prune. Returns the partitions dropped."""
    now = datetime.now(UTC)
    passed = (
        await conn.execute(select(EVENTS.c.occurred_at).where(EVENTS.c.seq == through).limit(1))
    ).scalar()
    passed = passed.astimezone(UTC) if passed is not None else None
    whole: list[str] = []
    for name in await attached(conn):
        low, high = (await conn.execute(text(f"SELECT min(seq), max(seq) FROM {name}"))).one()  # noqa: S608
        month = MonthPartition.named(name)
        closed = month is not None and month.end <= now
        if (
            closed
            and month is not None
            and (
                (high is not None and int(high) <= through)
                or (high is None and passed and month.end <= passed)
            )
        ):
            whole.append(name)
        elif low is not None and int(low) <= through:
            await _delete_through(conn, name, through)
    if not whole:
        return []
    try:
        async with conn.begin_nested():
            await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            # the parent first (as the writer's inserts take it), then nothing can reach the months
            await conn.execute(text(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE"))
            dropped: list[str] = []
            for name in whole:
                high = (await conn.execute(text(f"SELECT max(seq) FROM {name}"))).scalar()  # noqa: S608
                if high is not None and int(high) > through:  # a late event arrived since
                    await _delete_through(conn, name, through)
                    continue
                await conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
                await conn.execute(text(f"DROP TABLE {name}"))
                dropped.append(name)
        return dropped
    except DBAPIError as err:  # the lock was not had in time: delete the rows instead
        log.warning("audit retention: partitions %s not dropped (%s); deleting their rows", whole, err.orig)
        for name in whole:
            await _delete_through(conn, name, through)
        return []


async def _delete_through(conn: AsyncConnection, partition: str, through: int) -> None:
    """Delete a partition's events at or below `through` (the name is one of attached()'s)."""
    await conn.execute(text(f"DELETE FROM {partition} WHERE seq <= :t"), {"t": through})  # noqa: S608


async def _anchored(engine: AsyncEngine, name: str) -> bool:
    async with engine.connect() as conn:
        row = (await conn.execute(select(ANCHORS.c.through_seq).where(ANCHORS.c.archive == name))).first()
    return row is not None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- verification across the pruned range ---------------------------------------------------------


async def verify_retained(engine: AsyncEngine, store: KeyStore, directory: Path) -> CheckpointReport:
    lookup = store_lookup(store)
    async with engine.connect() as conn:
        anchors = {str(r.archive): r for r in (await conn.execute(select(ANCHORS))).all()}
    prev, expected, checked = GENESIS_HASH, 1, 0
    for path in sorted(directory.glob("audit-*.jsonl")):
        data = path.read_bytes()
        kid = data.split(b'"kid":"', 1)[1][:16].decode() if b'"kid":"' in data else ""
        public = lookup(kid)
        report = verify_archive(data, public) if public else ArchiveReport(False, 0, reason="unknown key")
        if not report.ok or report.from_seq != expected or report.first_hash != prev:
            reason = report.reason or "archive does not link to the one before it"
            return CheckpointReport(False, checked, 0, expected, f"{path.name}: {reason}")
        anchor = anchors.pop(path.name, None)
        if anchor is not None and (problem := _anchor_mismatch(anchor, data, report)):
            return CheckpointReport(False, checked, 0, int(anchor.through_seq), f"{path.name}: {problem}")
        checked += report.events
        prev, expected = str(report.last_hash), int(report.to_seq or 0) + 1
    if anchors:
        missing = min(anchors.values(), key=lambda r: int(r.through_seq))
        return CheckpointReport(
            False,
            checked,
            0,
            int(missing.from_seq),
            f"archive {missing.archive} of the prune anchor at seq {missing.through_seq} is missing",
        )
    chain = await _verify_from(engine, expected, prev, checked)
    return await verify_with_checkpoints(engine, store, chain)


def _anchor_mismatch(anchor: Any, data: bytes, report: ArchiveReport) -> str | None:
    if sm3(data).hex() != anchor.archive_sm3:
        return "SM3 digest differs from the one recorded in its prune anchor"
    recorded = (int(anchor.from_seq), int(anchor.through_seq), str(anchor.hash))
    if (report.from_seq, report.to_seq, report.last_hash) != recorded:
        return "range or last hash differs from its prune anchor"
    return None


async def _verify_from(engine: AsyncEngine, expected: int, prev: str, checked: int) -> VerifyReport:
    async with engine.connect() as conn:
        head = (await conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID))).first()
        q = select(EVENTS).order_by(EVENTS.c.seq).execution_options(yield_per=2000)
        async for row in (await conn.stream(q)).mappings():
            seq = int(row["seq"])
            if seq != expected:
                return VerifyReport(
                    False, checked, expected, f"missing event: expected seq {expected}, found {seq}"
                )
            if event_hash(row) != row["hash"] or row["prev_hash"] != prev:
                return VerifyReport(False, checked, seq, f"seq {seq}: chain broken")
            prev, expected, checked = row["hash"], expected + 1, checked + 1
    if head is None or int(head.seq) != expected - 1 or head.hash != prev:
        return VerifyReport(False, checked, expected - 1, "the chain head does not match the last event")
    return VerifyReport(True, checked)


# -- the background task ----------------------------------------------------------------------------


ChainReader = Callable[[AsyncEngine], Awaitable[int | None]]


async def prune_limit(engine: AsyncEngine, readers: Sequence[ChainReader]) -> int | None:
    """The highest seq retention may prune through: the least that every reader of the chain
    (the SOC forwarders, the portal's usage rollup) has read; None when no reader holds any."""
    read = [seq for reader in readers if (seq := await reader(engine)) is not None]
    return min(read) if read else None


class RetentionTask(PeriodicTask):
    """Archives and prunes sealed events older than `days` days, first `first_after` seconds after
    start, then every `every` seconds. Every worker may run it (see archive_and_prune). `held`
    says how far pruning may go at most (the SOC forwarders' cursors: nothing undelivered goes)."""

    name = "audit-retention"

    def __init__(
        self,
        engine: AsyncEngine,
        store: KeyStore,
        directory: Path,
        days: int,
        every: float = 3600.0,
        first_after: float = 60.0,
        held: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        super().__init__(every, first_after)
        self.engine, self.store, self.directory, self.days = engine, store, directory, days
        self.held = held
        self.pruned: list[Path] = []

    async def tick(self) -> Path | None:
        cutoff = datetime.now(UTC) - timedelta(days=self.days)
        through = await self.held() if self.held is not None else None
        path = await archive_and_prune(
            self.engine, self.store, self.directory, through_seq=through, older_than=cutoff
        )
        if path is not None:
            self.pruned.append(path)
            log.info("audit retention: archived and pruned %s", path.name)
        return path

    async def step(self) -> None:
        await self.tick()
