"""The whole history: the archived ranges (signed archives left by retention) and the live chain,
verified in one pass that says which range is which and what joins them, and searched without
re-importing the archives.

`verify_history` walks the prune anchors oldest first. For each: the archive file it names must
exist, have the SM3 recorded in the anchor, verify offline (every hash and link, its checkpoint
signed by a gateway key — `verify_archive`), cover exactly [from_seq, through_seq], end in the
anchor's hash, and begin where the one before ended (the first at seq 1, from genesis). Then the
live chain is checked from the last anchor (`verify_chain`, which also holds it to that anchor's
signed checkpoint). The report lists the segments in order:

    archived 1..5000   audit-1-5000.jsonl   anchor 5000 → hash …
    archived 5001..9000 …                   anchor 9000 → hash …
    live     9001..9412

An archive file no anchor names is reported (it was not produced by a prune of this chain, or its
anchor was deleted) but does not count as a segment.

`search_archives` reads the archives line by line (slower than the live table's indexes, fine for
an investigation) with the live search's filters."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import GENESIS_HASH
from gateway.audit.checkpoints import ANCHORS, store_lookup, verify_archive
from gateway.audit.field_index import index_keys, index_match
from gateway.audit.query import Filters, event_doc
from gateway.audit.verify import VerifyReport, verify_chain
from keys.keystore import KeyStore
from keys.sm3 import sm3


@dataclass
class Segment:
    kind: str  # "archived" | "live"
    from_seq: int
    to_seq: int  # from_seq - 1 when a live segment holds no event yet
    ok: bool
    events: int = 0
    archive: str | None = None
    archive_sm3: str | None = None
    anchor_hash: str | None = None  # the hash of event to_seq recorded in its prune anchor
    reason: str | None = None


@dataclass
class HistoryReport:
    ok: bool
    segments: list[Segment] = field(default_factory=list)
    unanchored_archives: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None
    reason: str | None = None

    @property
    def archived_events(self) -> int:
        return sum(s.events for s in self.segments if s.kind == "archived")

    @property
    def live_events(self) -> int:
        return sum(s.events for s in self.segments if s.kind == "live")

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "archived_events": self.archived_events,
            "live_events": self.live_events,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "segments": [asdict(s) for s in self.segments],
            "unanchored_archives": self.unanchored_archives,
        }


def with_history(chain: dict[str, Any], history: HistoryReport) -> dict[str, Any]:
    """The chain's report (`VerifyReport.to_json()`) with the history's segments added; not ok,
    at the history's first bad seq, when an archived range fails."""
    doc = {
        **chain,
        **{k: v for k, v in history.to_json().items() if k not in ("ok", "first_bad_seq", "reason")},
    }
    if chain["ok"] and not history.ok:
        doc.update(ok=False, first_bad_seq=history.first_bad_seq, reason=history.reason)
    return doc


async def verify_history(
    engine: AsyncEngine, store: KeyStore, directory: Path, live: VerifyReport | None = None
) -> HistoryReport:
    """`live`: the caller's own `verify_chain` report, used for the live segment when it starts
    at the last anchor read here (the chain is then not walked a second time)."""
    async with engine.connect() as conn:
        anchors = (await conn.execute(select(ANCHORS).order_by(ANCHORS.c.through_seq))).all()
    lookup = store_lookup(store)
    report = HistoryReport(ok=True)
    named = {str(a.archive) for a in anchors}
    report.unanchored_archives = sorted(
        p.name for p in directory.glob("audit-*.jsonl") if p.name not in named
    )
    expected, prev = 1, GENESIS_HASH
    for anchor in anchors:
        start, end = int(anchor.from_seq), int(anchor.through_seq)
        seg = Segment(
            "archived", start, end, True, archive=str(anchor.archive), archive_sm3=str(anchor.archive_sm3),
            anchor_hash=str(anchor.hash),
        )  # fmt: skip
        report.segments.append(seg)
        problem = _archive_problem(directory / str(anchor.archive), anchor, expected, prev, lookup, seg)
        if problem:
            seg.ok, seg.reason = False, problem
            return _broken(report, start if "link" in problem else end, f"{anchor.archive}: {problem}")
        expected, prev = end + 1, str(anchor.hash)
    last_anchor = int(anchors[-1].through_seq) if anchors else None
    if live is None or live.pruned_through != last_anchor:  # none, or a prune came in between
        live = await verify_chain(engine)
    seg = Segment("live", expected, expected + live.events_checked - 1, live.ok, live.events_checked)
    report.segments.append(seg)
    if not live.ok:
        seg.reason = live.reason
        return _broken(report, live.first_bad_seq, live.reason)
    return report


def _broken(report: HistoryReport, seq: int | None, reason: str | None) -> HistoryReport:
    report.ok, report.first_bad_seq, report.reason = False, seq, reason
    return report


def _archive_problem(
    path: Path, anchor: Any, expected: int, prev: str, lookup: Any, seg: Segment
) -> str | None:
    if not path.exists():
        return "the archive named by this prune anchor is missing"
    data = path.read_bytes()
    if sm3(data).hex() != anchor.archive_sm3:
        return "SM3 digest differs from the one recorded in its prune anchor"
    kid = _kid(data)
    public = lookup(kid) if kid else None
    if public is None:
        return f"signed by an unknown key {kid!r}"
    checked = verify_archive(data, public)
    if not checked.ok:
        return checked.reason or "archive does not verify"
    seg.events = checked.events
    if (checked.from_seq, checked.to_seq, checked.last_hash) != (seg.from_seq, seg.to_seq, anchor.hash):
        return "range or last hash differs from its prune anchor"
    if checked.from_seq != expected or checked.first_hash != prev:
        return "does not link to the range before it"
    return None


def _kid(data: bytes) -> str | None:
    header = data.split(b"\n", 1)[0]
    try:
        return str(orjson.loads(header).get("kid") or "") or None
    except orjson.JSONDecodeError:
        return None


# -- search ---------------------------------------------------------------------------------------


def _matches(doc: dict[str, Any], f: Filters) -> bool:
    at = datetime.fromisoformat(doc["occurred_at"].replace("Z", "+00:00"))
    if (f.since and at < f.since) or (f.until and at >= f.until):
        return False
    if f.principal and f.principal not in (doc["principal_id"], doc.get("subject")):
        return False
    if f.department and doc.get("department") != f.department:
        return False
    if f.status is not None and doc["status"] != f.status:
        return False
    if f.tier and doc["tier"] != f.tier:
        return False
    if f.uses_index:  # what the live search's index says of the event
        fields = [x for x in doc.get("fields") or [] if isinstance(x, dict)]
        return index_match(index_keys(fields, doc.get("reads") or []), f.dataset, f.field, f.decision)
    return True


def archived_events(directory: Path, archive_names: list[str]) -> Iterator[dict[str, Any]]:
    """Every event of the named archives, oldest first, as the live search shows it."""
    for name in archive_names:
        with (directory / name).open("rb") as lines:
            for line in lines:
                row = orjson.loads(line)
                if "seq" not in row:  # the header and the checkpoint line
                    continue
                row["occurred_at"] = datetime.fromisoformat(row["occurred_at"].replace("Z", "+00:00"))
                row.setdefault("variables_enc", None)  # columns added later are absent when NULL
                row.setdefault("subject", None)
                row.setdefault("row_count", None)
                row.setdefault("signature_kid", None)
                yield {**event_doc(row), "archive": name}


async def search_archives(
    engine: AsyncEngine, directory: Path, f: Filters, *, limit: int = 100, before: int | None = None
) -> dict[str, Any]:
    """Archived events matching `f`, newest first, `limit` a page (`before`: a seq, to page on).
    Only archives a prune anchor names are read (what `verify_history` vouches for); `missing`
    names those whose file is not in `directory`. `total` counts every match, as the live
    search's does, whatever `before` says. The files are read in a worker thread, so a long
    search does not stall the gateway's other requests, and only one page is held in memory."""
    async with engine.connect() as conn:
        names = [
            str(r.archive)
            for r in await conn.execute(select(ANCHORS.c.archive).order_by(ANCHORS.c.through_seq))
        ]
    present = [n for n in names if (directory / n).exists()]
    page_size = max(1, min(limit, 1000))
    total, older, page = await asyncio.to_thread(_scan_archives, directory, present, f, before, page_size)
    return {
        "events": page,
        "total": total,
        "total_exact": True,  # the archives are read through: always every match
        "next_before": page[-1]["seq"] if older > len(page) else None,
        "archives": present,
        "missing": [n for n in names if n not in present],
    }


def _scan_archives(
    directory: Path, names: list[str], f: Filters, before: int | None, page_size: int
) -> tuple[int, int, list[dict[str, Any]]]:
    """(every match, the matches below `before`, the newest `page_size` of those, newest first)."""
    total = older = 0
    newest: deque[dict[str, Any]] = deque(maxlen=page_size)  # archives are read oldest first
    for d in archived_events(directory, names):
        if not _matches(d, f):
            continue
        total += 1
        if before is None or d["seq"] < before:
            older += 1
            newest.append(d)
    return total, older, list(reversed(newest))
