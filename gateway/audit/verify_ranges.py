"""Verifying a seq range of the audit chain on PostgreSQL, in this process or in a worker process of
its own (`python -m gateway.audit.verify_ranges`), and joining the ranges' results into what one
serial walk over all of them would have found (gateway.audit.verify uses both).

This module imports only asyncpg, orjson and the chain's definition, so a worker starts in a few
tenths of a second.

**Per event.** PostgreSQL hands back the columns in the canonical JSON's (sorted) key order, the
time already written as the chain writes it (`to_char(occurred_at AT TIME ZONE 'UTC', …)`, the
microseconds always six digits); the canonical bytes are then `orjson.dumps` of the row zipped with
those keys, the NULL extension columns left out by position: no sort, no per-column Python.
latency_ms goes in as stored, without round(): PostgreSQL hands back the stored hash only when
the latency is its own round(x, 3) (and the time one Python holds), else NULL (see _FAST_HASH).
When SM3 of these bytes is not that hash, the row is read again whole and hashed by
`gateway.audit.chain.event_hash`, the writer's own function, which decides: the fast bytes can only
cause a second look, never hide a change. (If SM3 of the fast bytes equals the stored hash, they
*are* the bytes the writer hashed; they are a valid JSON encoding of this row's values, which
decodes to one row only, so the row is the one that was hashed.)

Measured (bench/README.md, 2026-12-03): building the canonical bytes in SQL instead
(`to_json` per column, `concat`) cost PostgreSQL more (~5-7 µs per event) than it saved here
(~3 µs), so the bytes stay built here.

**Ranges.** A range (lo, hi] is checked as the serial walk would from its first row, except that
the first row's prev_hash is only recorded when the hash before the range is not known (a worker
range that does not start the chain): `join` then holds it against the previous range's last hash,
in the serial walk's order of checks, so the first broken position and the reason are the same as
serial's whatever the split."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import orjson

from gateway.audit.chain import EXTENSION_COLUMNS, HASHED_COLUMNS, event_hash
from keys.sm3 import GIL_SLICE, hashlib_hasher, sm3_hex

MAX_SEQ = 2**63 - 1  # the upper bound of the last range: events past the head are walked too
PAGE = 10_000
TABLE = "audit_event"

# The hashed columns in the canonical JSON's key order (orjson sorts the writer's dict the same way).
FAST_KEYS: tuple[str, ...] = tuple(sorted((*HASHED_COLUMNS, *EXTENSION_COLUMNS)))
_CANONICAL_TIME = """to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# The stored hash, or NULL (a second look) for a row whose latency may not be its own round(x, 3)
# or whose time Python's datetime cannot hold: the walk hashes latency_ms as it is, without
# round(). The check: x = round(x * 1000) / 1000 in float8 (|x| < 1e15 first, so the product
# cannot overflow, which would be an error; NaN and infinities fail it). When it holds, x is the
# double nearest d = n / 1000 (n an integer), and for such an x Python's correctly rounded
# round(x, 3) is x: below 2**43, half an ulp of x is under 0.0005, so d is also the 3-decimal
# number nearest x's exact value; above, x's ulp exceeds 0.001 and the 3-decimal number nearest x
# reads back as x. tests/audit/test_verify_fast.py holds edge cases.
_FAST_HASH = (
    "CASE WHEN abs(latency_ms) < 1e15 THEN CASE WHEN latency_ms = round(latency_ms * 1000) / 1000"
    " AND occurred_at >= '0001-01-01 00:00:00+00' AND occurred_at < '10000-01-01 00:00:00+00'"
    " THEN hash END END"
)
_SELECT = ", ".join(_CANONICAL_TIME if k == "occurred_at" else k for k in FAST_KEYS)
RANGE_PAGE = f"SELECT {_SELECT}, {_FAST_HASH} FROM {TABLE} WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"  # noqa: S608
# What the writer's own function needs, for the second look at one row.
VERIFY_COLUMNS: tuple[str, ...] = (*HASHED_COLUMNS, *EXTENSION_COLUMNS, "hash")
ONE_ROW = f"SELECT {', '.join(VERIFY_COLUMNS)} FROM {TABLE} WHERE seq = $1"  # noqa: S608
_SEQ, _PREV, _HASH = FAST_KEYS.index("seq"), FAST_KEYS.index("prev_hash"), len(FAST_KEYS)
_EXTENSIONS = tuple((FAST_KEYS.index(name), name) for name in EXTENSION_COLUMNS)


@dataclass(frozen=True)
class RangeResult:
    """One range's walk: `checked` rows held (all of them, or those before `bad_seq`), the first and
    last row seen, and the first problem (`bad_seq`, `reason`) if any."""

    checked: int
    first_seq: int | None = None
    first_prev: str | None = None  # the first row's prev_hash (checked by `join` when not linked)
    last_seq: int | None = None
    last_hash: str | None = None
    bad_seq: int | None = None
    reason: str | None = None
    linked: bool = True  # the first row's prev_hash was checked here (the hash before was known)


# The serial walk's messages (gateway.audit.verify builds its report from these).
def pruned_remains(seq: int, pruned: int) -> str:
    return f"seq {seq}: event remains in the range pruned through seq {pruned}"


def missing(expected: int, seq: int) -> str:
    return f"missing event: expected seq {expected}, found {seq}"


def content_mismatch(seq: int) -> str:
    return f"seq {seq}: content does not match its hash"


def link_mismatch(seq: int, pruned: int | None) -> str:
    link = f"the prune anchor at seq {pruned}" if seq - 1 == pruned else f"seq {seq - 1}"
    return f"seq {seq}: prev_hash does not match the hash of {link}"


async def _second_look(raw: asyncpg.Connection, seq: int) -> str | None:
    """The whole row through the writer's own canonical form: its stored hash when that is the
    hash of its content, else None."""
    row = await raw.fetchrow(ONE_ROW, seq)
    return row["hash"] if row is not None and event_hash(row) == row["hash"] else None


async def verify_range(
    raw: asyncpg.Connection,
    lo: int,
    hi: int,
    expected: int,
    prev: str | None,
    pruned: int | None,
    page: int = PAGE,
) -> RangeResult:
    """Walk the events lo < seq <= hi in seq order on `raw` (inside the caller's snapshot), the
    next page in flight while one is hashed. `expected` is the first seq due; `prev` the hash the
    first event must link to, None when not known here (its prev_hash is then left to `join`)."""
    if pruned is not None and expected <= pruned:
        raise ValueError(f"the first seq due ({expected}) is in the pruned range (through {pruned})")
    dumps, keys = orjson.dumps, FAST_KEYS
    (i0, k0), (i1, k1), (i2, k2), (i3, k3) = _EXTENSIONS
    proto = hashlib_hasher()  # None without SM3 in hashlib: then all through sm3_hex (cryptography's)
    start, linked = expected, prev is not None
    first_seq: int | None = None
    first_prev: str | None = None

    def result(bad_seq: int | None = None, reason: str | None = None) -> RangeResult:
        checked = expected - start  # each row held moved `expected` on by one and `prev` to its hash
        last_seq, last_hash = (expected - 1, prev) if checked else (None, None)
        return RangeResult(checked, first_seq, first_prev, last_seq, last_hash, bad_seq, reason, linked)

    pending: asyncio.Future[list[Any]] | None = asyncio.ensure_future(raw.fetch(RANGE_PAGE, lo, hi, page))
    try:
        while pending is not None:
            rows = await pending
            pending = None
            if len(rows) == page:  # more may follow: ask for them before hashing these
                pending = asyncio.ensure_future(raw.fetch(RANGE_PAGE, rows[-1][_SEQ], hi, page))
            if rows and first_seq is None:
                first_seq, first_prev = rows[0][_SEQ], rows[0][_PREV]
            for row in rows:
                seq = row[_SEQ]
                if seq != expected:  # expected > pruned (above), so an expected seq is not a pruned one
                    if pruned is not None and seq <= pruned:
                        return result(seq, pruned_remains(seq, pruned))
                    return result(expected, missing(expected, seq))
                doc = dict(zip(keys, row, strict=False))  # the row's last column is the stored hash
                if row[i0] is None:  # NULL extension columns are not hashed
                    del doc[k0]
                if row[i1] is None:
                    del doc[k1]
                if row[i2] is None:
                    del doc[k2]
                if row[i3] is None:
                    del doc[k3]
                data = dumps(doc)
                if proto is not None and len(data) <= GIL_SLICE:  # longer: sm3_hex slices them
                    hasher = proto.copy()
                    hasher.update(data)
                    digest = hasher.hexdigest()
                else:
                    digest = sm3_hex(data)
                stored = row[_HASH]  # NULL when PostgreSQL could not vouch for the latency or time
                if digest != stored and (stored := await _second_look(raw, seq)) is None:
                    return result(seq, content_mismatch(seq))
                if prev is not None and row[_PREV] != prev:
                    return result(seq, link_mismatch(seq, pruned))
                prev = stored
                expected += 1
    finally:
        if pending is not None:  # stopped early (a break found): let the driver finish its query
            with contextlib.suppress(Exception):
                await pending
    return result()


@dataclass(frozen=True)
class Joined:
    """The ranges walked as one: `bad` (checked, seq, reason) at the first problem, else the state
    after the last event (`expected` next seq, `prev` its hash, `checked` events)."""

    checked: int
    expected: int
    prev: str
    bad: tuple[int, int, str] | None = None


def join(results: Sequence[RangeResult], expected: int, prev: str, pruned: int | None) -> Joined:
    """What one walk over the ranges, in order, from (`expected`, `prev`) reports."""
    checked = 0
    for r in results:
        if r.first_seq is None:  # nothing in this range: the next row found must still be `expected`
            continue
        if not r.linked:
            # The serial walk's checks of this first row, in its order: the seq (pruned rows
            # cannot be here: only the first range reaches below the anchor), the content (the
            # worker's, when it stopped at its first row), then the link to the previous range.
            if r.first_seq != expected:
                return Joined(checked, expected, prev, (checked, expected, missing(expected, r.first_seq)))
            if r.bad_seq is not None and r.checked == 0:
                return Joined(checked, expected, prev, (checked, r.bad_seq, str(r.reason)))
            if r.first_prev != prev:
                return Joined(checked, expected, prev, (checked, expected, link_mismatch(expected, pruned)))
        if r.bad_seq is not None:
            return Joined(checked, expected, prev, (checked + r.checked, r.bad_seq, str(r.reason)))
        checked += r.checked
        assert r.last_seq is not None and r.last_hash is not None
        expected, prev = r.last_seq + 1, r.last_hash
    return Joined(checked, expected, prev)


# -- the worker process --------------------------------------------------------------------------


async def _worker(job: dict[str, Any]) -> RangeResult:
    raw = await asyncpg.connect(job["dsn"])
    try:
        async with raw.transaction(isolation="repeatable_read", readonly=True):
            # the exporting transaction's snapshot: every worker sees the chain the parent sees
            await raw.execute(f"SET TRANSACTION SNAPSHOT {_quote(job['snapshot'])}")
            return await verify_range(
                raw, job["lo"], job["hi"], job["expected"], job["prev"], job["pruned"], job["page"]
            )
    finally:
        await raw.close()


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def main() -> int:
    """One job as JSON on stdin (the DSN travels there, not in the arguments, which `ps` shows);
    its RangeResult as JSON on stdout."""
    job = json.loads(sys.stdin.buffer.read())
    gc.disable()  # a page is ~200,000 objects, freed by reference counting: no cycles to collect
    result = asyncio.run(_worker(job))
    sys.stdout.write(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
