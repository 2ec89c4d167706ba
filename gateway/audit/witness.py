"""`ChainWitness`: what this process itself appended to the audit chain, for the jobs beside it.

The writer (`ChainedAuditLog`) tells the witness about every batch it committed. Two jobs then
skip reading the chain back from the database:
  - the checkpoint writer signs a head whose hash this process computed, linked without a break
    from the previous checkpoint, instead of re-reading and re-hashing the segment in between
    (`vouches`); that signs what was appended, not what the table holds by then;
  - the alert evaluator takes the events after its cursor from here (`facts_after`).

It holds one unbroken run: a batch that does not link onto the last one held (another worker
appended in between, or this writer recovered from a failure) starts a new run, and anything
not in the run is read from the database as before. Memory is bounded: hashes of the last
`max_hashes` events, rule facts of the last `max_facts`."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.audit.alert_rules import EventFacts


class ChainWitness:
    def __init__(self, max_hashes: int = 20_000, max_facts: int = 5_000) -> None:
        self.max_hashes = max_hashes
        self._start = 0  # seq of _hashes[0]
        self._hashes: list[str] = []  # hashes of seqs _start, _start + 1, ...
        self._facts: deque[EventFacts] = deque(maxlen=max_facts)

    @property
    def head(self) -> tuple[int, str] | None:
        """The last (seq, hash) this process appended, if it holds any."""
        if len(self._hashes) < 2:  # only the link a run starts from
            return None
        return self._start + len(self._hashes) - 1, self._hashes[-1]

    def appended(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """A committed batch, in seq order: each row with its seq, prev_hash and hash."""
        if not rows:
            return
        first, prev = int(rows[0]["seq"]), str(rows[0]["prev_hash"])
        if self.hash_at(first - 1) != prev or first - 1 != self._start + len(self._hashes) - 1:
            self._start, self._hashes = first - 1, [prev]  # a new run, linked from `prev`
            self._facts.clear()
        self._hashes.extend(str(r["hash"]) for r in rows)
        self._facts.extend(EventFacts.from_row(r) for r in rows)
        if len(self._hashes) > self.max_hashes:
            drop = len(self._hashes) - self.max_hashes // 2
            self._start += drop
            del self._hashes[:drop]

    def hash_at(self, seq: int) -> str | None:
        i = seq - self._start
        return self._hashes[i] if 0 <= i < len(self._hashes) else None

    def vouches(self, start: tuple[int, str], end: int) -> str | None:
        """The hash of event `end` if this process appended every event in (start seq, end],
        linked from `start`'s hash; None when it cannot say."""
        if end <= start[0] or self.hash_at(start[0]) != start[1]:
            return None
        return self.hash_at(end)

    def facts_after(self, seq: int, limit: int) -> list[EventFacts] | None:
        """The rule facts of events seq + 1, seq + 2, ... (at most `limit`), if held from seq + 1
        on; None when event seq + 1 is not held (read it from the database)."""
        facts = self._facts
        while facts and facts[0].seq <= seq:  # evaluated already: no need to keep them
            facts.popleft()
        if not facts or facts[0].seq != seq + 1:
            return None
        return [facts[i] for i in range(min(limit, len(facts)))]
