"""Signed checkpoints: the chain anchored outside the database.

A checkpoint is (seq, hash of the event at seq, created_at, kid, SM2 signature). The signature is
by the gateway's signing key (`<var_dir>/keys/sm2`, the key that signs responses) over

    b"shuqiao-audit-checkpoint/v1\\n" + orjson({"created_at", "hash", "kid", "seq"}, sorted keys)

with created_at as UTC ISO-8601 with microseconds. Whoever can write the database but does not hold
the private key can no longer rewrite the chain and recompute every hash through the head: the
first checkpoint after the rewritten event no longer matches the event at its seq, and a forged
checkpoint does not verify.

Before signing, the writer re-verifies the chain from the previous checkpoint to the new seq (so it
never signs a segment that is already broken), unless this process appended that whole segment
itself (gateway.audit.witness): then it signs the hash it computed while appending, after checking
that the stored event still has it. Several workers may run the writer: the seq is the primary
key and a second insert for the same seq is ignored.

`verify_with_checkpoints` = `verify_chain` + every checkpoint's signature + the checkpointed hash
against the event at that seq. `export_archive` / `verify_archive`: a seq range as JSON lines ending
in the checkpoint that covers its last event, verifiable offline with the public key alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit.background import PeriodicTask
from gateway.audit.chain import GENESIS_HASH, canonical_time, event_hash
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditCheckpoint, AuditEvent, AuditPruneAnchor
from gateway.audit.verify import Anchor, VerifyReport, anchor_problem, latest_anchor, verify_chain
from gateway.audit.witness import ChainWitness
from gateway.db import table_of
from keys import sm2
from keys.keystore import KeyStore, key_id
from keys.sm2 import SM2PublicKey

log = logging.getLogger("shuqiao.audit")

DOMAIN = b"shuqiao-audit-checkpoint/v1\n"
ARCHIVE_FORMAT = "shuqiao-audit-archive/v1"
EVENTS = table_of(AuditEvent)
HEAD = table_of(AuditChainHead)
EVENT_COLUMNS = tuple(c.name for c in EVENTS.columns)


CHECKPOINTS = table_of(AuditCheckpoint)
ANCHORS = table_of(AuditPruneAnchor)


class CheckpointError(Exception):
    pass


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    created_at: str  # canonical UTC ISO-8601 with microseconds
    kid: str
    signature: str

    def message(self) -> bytes:
        return signed_message(self.seq, self.hash, self.created_at, self.kid)

    def verify(self, public_key: SM2PublicKey) -> bool:
        try:
            sig = bytes.fromhex(self.signature)
        except ValueError:
            return False
        return (
            sig.hex() == self.signature
            and key_id(public_key) == self.kid
            and sm2.verify(public_key, self.message(), sig)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "created_at": self.created_at,
            "kid": self.kid,
            "signature": self.signature,
        }

    @classmethod
    def from_row(cls, row: Any) -> Checkpoint:
        return cls(
            int(row.seq), str(row.hash), canonical_time(row.created_at), str(row.kid), str(row.signature)
        )


def signed_message(seq: int, hash_: str, created_at: str, kid: str) -> bytes:
    doc = {"seq": int(seq), "hash": hash_, "created_at": created_at, "kid": kid}
    return DOMAIN + orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN")
        else:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            yield conn
        finally:
            await conn.rollback()


snapshot = contextlib.asynccontextmanager(_snapshot)


async def latest_checkpoint(conn: AsyncConnection, at_or_below: int | None = None) -> Checkpoint | None:
    q = select(CHECKPOINTS).order_by(CHECKPOINTS.c.seq.desc()).limit(1)
    if at_or_below is not None:
        q = q.where(CHECKPOINTS.c.seq <= at_or_below)
    row = (await conn.execute(q)).first()
    return Checkpoint.from_row(row) if row else None


async def _segment_ok(conn: AsyncConnection, start: Checkpoint | None, end_seq: int) -> str | None:
    """Re-verify events (start.seq, end_seq] and their link to `start`; None when they hold."""
    expected = (start.seq if start else 0) + 1
    prev = start.hash if start else GENESIS_HASH
    if start is not None:
        found = (await conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == start.seq))).first()
        if found is not None and found.hash != start.hash:
            return f"seq {start.seq}: event no longer matches its checkpoint"
        if found is None and expected > 1 and not await _anchored(conn, start.seq):
            return f"seq {start.seq}: checkpointed event is missing"
    q = (
        select(EVENTS)
        .where(EVENTS.c.seq >= expected, EVENTS.c.seq <= end_seq)
        .order_by(EVENTS.c.seq)
        .execution_options(yield_per=2000)
    )
    async for row in (await conn.stream(q)).mappings():
        seq = int(row["seq"])
        if seq != expected:
            return f"missing event: expected seq {expected}, found {seq}"
        if event_hash(row) != row["hash"] or row["prev_hash"] != prev:
            return f"seq {seq}: chain broken"
        prev, expected = row["hash"], expected + 1
    if expected != end_seq + 1:
        return f"events missing before seq {end_seq}"
    return None


async def _anchored(conn: AsyncConnection, seq: int) -> bool:
    """Pruned by retention: the events up to `seq` are gone on purpose (see retention.py). With
    prune anchors that is what the latest anchor says; prunes from before them (migration 0009)
    left no anchor, only the gap below the first remaining event."""
    anchor = await latest_anchor(conn)
    if anchor is not None:
        return seq <= anchor.through_seq
    first = (await conn.execute(select(func.min(EVENTS.c.seq)))).scalar()
    return first is None or int(first) > seq


async def write_checkpoint(
    engine: AsyncEngine, store: KeyStore, seq: int | None = None, witness: ChainWitness | None = None
) -> Checkpoint | None:
    """Sign the event at `seq` (default: the chain head, or with a `witness` the last event this
    process appended, when no checkpoint covers it yet). Returns the checkpoint (an existing one
    if that seq is already checkpointed), None for an empty chain; raises CheckpointError when
    the segment since the previous checkpoint does not verify (nothing is signed then).

    The segment is re-read and re-hashed unless the witness saw this process append all of it,
    linked from the previous checkpoint; then the stored hash of the target must equal the one
    this process computed."""
    async with snapshot(engine) as conn:
        head = (await conn.execute(select(HEAD.c.seq).where(HEAD.c.id == HEAD_ID))).scalar()
        target = int(head or 0) if seq is None else seq
        mine = witness.head if seq is None and witness is not None else None
        if mine and mine[0] <= target:
            # Only if newer than the latest checkpoint: a worker that has been idle while others
            # appended would otherwise keep "signing" its old head and never the chain's.
            latest = await latest_checkpoint(conn)
            if mine[0] > (latest.seq if latest else 0):
                target = mine[0]
        if target <= 0:
            return None
        if target > int(head or 0):
            raise CheckpointError(f"seq {target} is beyond the chain head ({head})")
        existing = (await conn.execute(select(CHECKPOINTS).where(CHECKPOINTS.c.seq == target))).first()
        if existing is not None:
            return Checkpoint.from_row(existing)
        previous = await latest_checkpoint(conn, target - 1)
        start = (previous.seq, previous.hash) if previous else (0, GENESIS_HASH)
        vouched = witness.vouches(start, target) if witness is not None else None
        if vouched is None and (problem := await _segment_ok(conn, previous, target)):
            raise CheckpointError(f"refusing to sign: {problem}")
        event = (await conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == target))).one()
        if vouched is not None and event.hash != vouched:
            raise CheckpointError(f"refusing to sign: seq {target} is not the event this gateway appended")
    info, private = store.current()
    created = datetime.now(UTC)
    created_text = canonical_time(created)
    sig = sm2.sign(private, signed_message(target, event.hash, created_text, info.kid)).hex()
    values = {
        "seq": target,
        "hash": event.hash,
        "created_at": _parse_time(created_text),
        "kid": info.kid,
        "signature": sig,
    }
    ins = (sqlite_insert if engine.dialect.name == "sqlite" else pg_insert)(CHECKPOINTS)
    async with engine.begin() as conn:
        await conn.execute(ins.values(**values).on_conflict_do_nothing())
        row = (await conn.execute(select(CHECKPOINTS).where(CHECKPOINTS.c.seq == target))).one()
    return Checkpoint.from_row(row)


def store_lookup(store: KeyStore) -> Callable[[str], SM2PublicKey | None]:
    """Public keys by kid from the key store, expired or retired ones included: a checkpoint
    stays verifiable after its key has been rotated out (its created_at is checked instead)."""
    validity = {k.kid: k for k in store.list()}

    def lookup(kid: str) -> SM2PublicKey | None:
        path = store.directory / f"{kid}.pub.pem"
        if kid not in validity or not path.exists():
            return None
        public = sm2.load_pem_public_key(path.read_bytes())
        return public if key_id(public) == kid else None

    lookup.validity = validity  # type: ignore[attr-defined]
    return lookup


@dataclass(frozen=True)
class CheckpointReport:
    ok: bool
    events_checked: int
    checkpoints_checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    last_checkpoint_seq: int | None = None
    pruned_through: int | None = None  # the prune anchor: events 1..this are archived


async def verify_with_checkpoints(
    engine: AsyncEngine, store: KeyStore, chain: VerifyReport | None = None
) -> CheckpointReport:
    """`verify_chain`, then every checkpoint: signature by a known gateway key valid when it was
    made, and its hash equal to the event at its seq. Checkpoints in a pruned range are checked
    for their signature only; the one at the prune anchor must equal the anchor."""
    chain = chain or await verify_chain(engine)  # retention passes its own (archives + anchor)
    lookup = store_lookup(store)
    checked, last = 0, None
    async with snapshot(engine) as conn:
        q = (
            select(CHECKPOINTS, EVENTS.c.hash.label("event_hash"))
            .select_from(CHECKPOINTS.outerjoin(EVENTS, EVENTS.c.seq == CHECKPOINTS.c.seq))
            .order_by(CHECKPOINTS.c.seq)
        )
        anchor = await latest_anchor(conn)
        first_event = (await conn.execute(select(func.min(EVENTS.c.seq)))).scalar()
        pruned_through = anchor.through_seq if anchor else _legacy_pruned(first_event)
        pruned = anchor.through_seq if anchor else None
        for row in (await conn.execute(q)).all():
            cp = Checkpoint.from_row(row)
            bad = _signature_problem(cp, lookup) or _checkpoint_problem(
                cp, row.event_hash, pruned_through, anchor
            )
            if bad:
                return CheckpointReport(False, chain.events_checked, checked, cp.seq, bad, last, pruned)
            checked, last = checked + 1, cp.seq
        if anchor is not None and (problem := await anchor_problem(conn, anchor)):
            return CheckpointReport(
                False, chain.events_checked, checked, anchor.through_seq, problem, last, pruned
            )
    if not chain.ok:
        return CheckpointReport(
            False, chain.events_checked, checked, chain.first_bad_seq, chain.reason, last, pruned
        )
    return CheckpointReport(True, chain.events_checked, checked, None, None, last, pruned)


def _legacy_pruned(first_event: int | None) -> int:
    """Without an anchor (a prune from before migration 0009): below the first remaining event
    (everything, when no event remains)."""
    return sys.maxsize if first_event is None else int(first_event) - 1


def _signature_problem(cp: Checkpoint, lookup: Callable[[str], SM2PublicKey | None]) -> str | None:
    public = lookup(cp.kid)
    validity = lookup.validity  # type: ignore[attr-defined]
    if public is None:
        return f"checkpoint {cp.seq}: unknown signing key {cp.kid}"
    if not cp.verify(public):
        return f"checkpoint {cp.seq}: signature does not verify"
    if not validity[cp.kid].not_before <= _parse_time(cp.created_at) < validity[cp.kid].not_after:
        return f"checkpoint {cp.seq}: made outside its key's validity"
    return None


def _checkpoint_problem(
    cp: Checkpoint, event_hash_: str | None, pruned_through: int, anchor: Anchor | None
) -> str | None:
    """The checkpoint against the chain: its event's hash, or the anchor when it is the anchor."""
    if anchor is not None and cp.seq == anchor.through_seq and cp.hash != anchor.hash:
        return f"checkpoint {cp.seq}: differs from the prune anchor at its seq"
    if cp.seq <= pruned_through:
        return None  # pruned on purpose: its events are in an archive (verify-retained)
    if event_hash_ is None:
        return f"checkpoint {cp.seq}: its event is missing"
    if event_hash_ != cp.hash:
        return (
            f"checkpoint {cp.seq}: the event at seq {cp.seq} no longer has the signed hash "
            "(the chain was rewritten at or before it)"
        )
    return None


def as_verify_report(report: CheckpointReport) -> VerifyReport:
    return VerifyReport(
        report.ok, report.events_checked, report.first_bad_seq, report.reason, report.pruned_through
    )


# -- archives ----------------------------------------------------------------------------------


def _event_doc(row: Any) -> dict[str, Any]:
    doc = {name: row[name] for name in EVENT_COLUMNS}
    doc["occurred_at"] = canonical_time(row["occurred_at"])
    return doc


def _line(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS) + b"\n"


async def export_archive(
    engine: AsyncEngine, store: KeyStore, from_seq: int, to_seq: int | None
) -> AsyncIterator[bytes]:
    """JSON lines: a header {format, from_seq, to_seq, prev_hash, kid}, one line per event
    (every column), and a last line {"checkpoint": {...}} signing the event at to_seq (a
    checkpoint is written for to_seq if there is none). Sealed variables stay sealed."""
    checkpoint = await write_checkpoint(engine, store, to_seq)
    if checkpoint is None:
        raise CheckpointError("the chain is empty")
    to_seq = checkpoint.seq
    if not 1 <= from_seq <= to_seq:
        raise CheckpointError(f"bad range {from_seq}..{to_seq}")
    async with snapshot(engine) as conn:
        prev_hash = await _hash_before(conn, from_seq)
        yield _line(
            {
                "format": ARCHIVE_FORMAT,
                "from_seq": from_seq,
                "to_seq": to_seq,
                "prev_hash": prev_hash,
                "kid": checkpoint.kid,
            }
        )
        q = (
            select(EVENTS)
            .where(EVENTS.c.seq >= from_seq, EVENTS.c.seq <= to_seq)
            .order_by(EVENTS.c.seq)
            .execution_options(yield_per=2000)
        )
        async for row in (await conn.stream(q)).mappings():
            yield _line(_event_doc(row))
    yield _line({"checkpoint": checkpoint.to_json()})


async def _hash_before(conn: AsyncConnection, from_seq: int) -> str | None:
    """The hash the event at from_seq links to: genesis, the event before, or, once that event
    is pruned, the prune anchor at from_seq - 1 (None if neither is known)."""
    if from_seq == 1:
        return GENESIS_HASH
    row = (await conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == from_seq - 1))).first()
    if row is not None:
        return str(row.hash)
    anchor = (await conn.execute(select(ANCHORS.c.hash).where(ANCHORS.c.through_seq == from_seq - 1))).first()
    return str(anchor.hash) if anchor else None


@dataclass(frozen=True)
class ArchiveReport:
    ok: bool
    events: int
    from_seq: int | None = None
    to_seq: int | None = None
    kid: str | None = None
    reason: str | None = None
    first_hash: str | None = None  # prev_hash of the first event: links to the archive before it
    last_hash: str | None = None


def verify_archive(data: bytes, public_key: SM2PublicKey) -> ArchiveReport:
    """Offline: every line in canonical form, every event hash and link, seqs contiguous over
    [from_seq, to_seq], and the checkpoint signed by `public_key` over the last event's hash.
    Any change to any byte fails one of these."""
    try:
        return _verify_archive(data, public_key)
    except Exception as err:  # malformed input of any kind is a failed verification
        return ArchiveReport(False, 0, reason=f"malformed archive: {type(err).__name__}: {err}")


def _verify_archive(data: bytes, public_key: SM2PublicKey) -> ArchiveReport:
    lines = data.split(b"\n")
    if len(lines) < 3 or lines[-1] != b"":
        return ArchiveReport(False, 0, reason="not a complete archive (header, events, checkpoint)")
    docs = []
    for n, raw in enumerate(lines[:-1], 1):
        doc = orjson.loads(raw)
        if orjson.dumps(doc, option=orjson.OPT_SORT_KEYS) != raw:
            return ArchiveReport(False, 0, reason=f"line {n} is not in canonical form")
        docs.append(doc)
    header, events, tail = docs[0], docs[1:-1], docs[-1]
    header_keys = {"format", "from_seq", "to_seq", "prev_hash", "kid"}
    if set(header) != header_keys or header["format"] != ARCHIVE_FORMAT:
        return ArchiveReport(False, 0, reason="not a shuqiao-audit-archive/v1 header")
    from_seq, to_seq, kid = int(header["from_seq"]), int(header["to_seq"]), header["kid"]
    report = {"from_seq": from_seq, "to_seq": to_seq, "kid": kid}

    def bad(checked: int, reason: str) -> ArchiveReport:
        return ArchiveReport(False, checked, **report, reason=reason)

    if kid != key_id(public_key):
        return bad(0, f"archive signed by key {kid}, not by this public key")
    prev, expected = header["prev_hash"], from_seq
    first_hash = None
    for doc in events:
        if set(doc) != set(EVENT_COLUMNS):
            return bad(expected - from_seq, f"seq {expected}: unexpected columns")
        if doc["seq"] != expected:
            return bad(expected - from_seq, f"expected seq {expected}")
        if first_hash is None:
            first_hash = doc["prev_hash"]
        if prev is not None and doc["prev_hash"] != prev:
            return bad(expected - from_seq, f"seq {expected}: broken link")
        row = {**doc, "occurred_at": _parse_time(doc["occurred_at"])}
        if canonical_time(row["occurred_at"]) != doc["occurred_at"]:
            return bad(expected - from_seq, f"seq {expected}: time not canonical")
        if event_hash(row) != doc["hash"]:
            return bad(expected - from_seq, f"seq {expected}: hash mismatch")
        prev, expected = doc["hash"], expected + 1
    if expected != to_seq + 1:
        return bad(expected - from_seq, "events missing at the end")
    checkpoint_keys = {"seq", "hash", "created_at", "kid", "signature"}
    if set(tail) != {"checkpoint"} or set(tail["checkpoint"]) != checkpoint_keys:
        return bad(len(events), "no checkpoint at the end")
    cp = Checkpoint(**tail["checkpoint"])
    if cp.seq != to_seq or cp.hash != prev or cp.kid != kid:
        return bad(len(events), "checkpoint does not cover the last event")
    if canonical_time(_parse_time(cp.created_at)) != cp.created_at:
        return bad(len(events), "checkpoint time not canonical")
    if not cp.verify(public_key):
        return bad(len(events), "checkpoint signature does not verify")
    return ArchiveReport(True, len(events), **report, first_hash=first_hash, last_hash=prev)


# -- the background writer ---------------------------------------------------------------------


class CheckpointTask(PeriodicTask):
    """Writes a checkpoint every `every_events` new events or every `every_seconds` when the chain
    moved (whichever comes first), polling the head each `poll` seconds."""

    name = "audit-checkpoints"

    def __init__(
        self,
        engine: AsyncEngine,
        store: KeyStore,
        every_events: int,
        every_seconds: float,
        poll: float = 1.0,
        witness: ChainWitness | None = None,
    ) -> None:
        super().__init__(min(poll, every_seconds) if every_seconds > 0 else poll)
        self.engine, self.store, self.witness = engine, store, witness
        self.every_events, self.every_seconds = every_events, every_seconds
        self.written = 0
        self._since: float | None = None  # loop time of the last checkpoint written (or start)

    async def tick(self, elapsed: float) -> bool:
        async with self.engine.connect() as conn:
            head = int((await conn.execute(select(HEAD.c.seq).where(HEAD.c.id == HEAD_ID))).scalar() or 0)
            last = await latest_checkpoint(conn)
        behind = head - (last.seq if last else 0)
        if behind <= 0:
            return False
        if behind >= self.every_events or (self.every_seconds > 0 and elapsed >= self.every_seconds):
            await write_checkpoint(self.engine, self.store, witness=self.witness)
            self.written += 1
            return True
        return False

    async def step(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._since is None:  # the first step: count from the task's start
            self._since = now - self.first_after
        if await self.tick(now - self._since):
            self._since = now
