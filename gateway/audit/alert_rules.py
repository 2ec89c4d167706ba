"""The alert rules as pure, incremental state: no I/O, one `observe()` per event in seq order.

The evaluator used to ask the database, for every event, how many rows its principal had read in
the last hour; at a few hundred requests a second that query was the largest cost of the audit
chain. Here each rule keeps what it needs in memory instead:

  bulk_extraction   a per-principal sliding sum of rows read, in one-second buckets
  forbidden_probing a per-principal sliding sum of FORBIDDEN_FIELD denials, the same way
  l4_out_of_hours   stateless: the event's fields, the catalogue's levels, the working hours
  new_address       the (principal, address) pairs seen so far, for the principals loaded

Windows are exact to the second: an event at t counts what fell in [floor(t - window), t].
`AlertEngine` (gateway/audit/alerts.py) keeps this state in step with the chain: it replays or
rebuilds it from the database when another worker evaluated events in between."""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from gateway.audit.chain import canonical_time
from gateway.audit.detail import denied_count, stored_fields

if TYPE_CHECKING:  # for annotations only: this module does not need SQLAlchemy at run time
    from sqlalchemy import RowMapping

SHANGHAI = "Asia/Shanghai"


def _hhmm(text: str) -> time:
    h, _, m = text.strip().partition(":")
    return time(int(h), int(m or 0))


@dataclass(frozen=True)
class AlertRules:
    bulk_rows: int = 10_000
    bulk_window: timedelta = timedelta(hours=1)
    probe_denials: int = 20
    probe_window: timedelta = timedelta(minutes=10)
    work_start: time = time(8, 30)
    work_end: time = time(18, 0)
    work_days: frozenset[int] = field(default_factory=lambda: frozenset(range(1, 6)))  # ISO: Mon=1
    timezone: str = SHANGHAI

    @classmethod
    def parse(
        cls,
        *,
        bulk_rows: int,
        bulk_window_seconds: int,
        probe_denials: int,
        probe_window_seconds: int,
        working_hours: str,
        working_days: str,
    ) -> AlertRules:
        """working_hours "08:30-18:00"; working_days "1-5" or "1,2,3,4,5,6" (ISO weekdays)."""
        start, _, end = working_hours.partition("-")
        days: set[int] = set()
        for part in working_days.split(","):
            lo, _, hi = part.partition("-")
            days.update(range(int(lo), int(hi or lo) + 1))
        return cls(
            bulk_rows,
            timedelta(seconds=bulk_window_seconds),
            probe_denials,
            timedelta(seconds=probe_window_seconds),
            _hhmm(start),
            _hhmm(end),
            frozenset(days),
        )

    @classmethod
    def from_settings(cls, settings: Any) -> AlertRules:
        return cls.parse(
            bulk_rows=settings.audit_alert_bulk_rows,
            bulk_window_seconds=settings.audit_alert_bulk_window_seconds,
            probe_denials=settings.audit_alert_probe_denials,
            probe_window_seconds=settings.audit_alert_probe_window_seconds,
            working_hours=settings.audit_working_hours,
            working_days=settings.audit_working_days,
        )

    def working(self, when: datetime) -> bool:
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        local = when.astimezone(ZoneInfo(self.timezone))
        return local.isoweekday() in self.work_days and self.work_start <= local.time() < self.work_end


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SlidingSum:
    """Per-key sums over the last `span` seconds, kept in one-second buckets, so memory is bounded
    by keys × span however many events arrive."""

    def __init__(self, span: timedelta) -> None:
        self.span = span.total_seconds()
        self._buckets: dict[str, deque[list[int]]] = {}  # key → [[second, amount], ...] oldest first
        self._totals: dict[str, int] = {}
        self._adds = 0

    def add(self, key: str, at: float, amount: int) -> int:
        """Add `amount` at epoch time `at`; returns the key's sum over [floor(at - span), at]."""
        second = math.floor(at)
        buckets = self._buckets.setdefault(key, deque())
        total = self._evict(key, buckets, math.floor(at - self.span))
        if buckets and buckets[-1][0] >= second:  # same second (or a clock step back): merge
            buckets[-1][1] += amount
        else:
            buckets.append([second, amount])
        self._totals[key] = total + amount
        self._adds += 1
        if self._adds % 10_000 == 0:
            self._sweep(at)
        return total + amount

    def total(self, key: str) -> int:
        return self._totals.get(key, 0)

    def _evict(self, key: str, buckets: deque[list[int]], oldest: int) -> int:
        total = self._totals.get(key, 0)
        while buckets and buckets[0][0] < oldest:
            total -= buckets.popleft()[1]
        return total

    def _sweep(self, now: float) -> None:
        """Forget keys whose every bucket has left the window (principals gone quiet)."""
        oldest = math.floor(now - self.span)
        for key in list(self._buckets):
            buckets = self._buckets[key]
            self._totals[key] = self._evict(key, buckets, oldest)
            if not buckets:
                del self._buckets[key], self._totals[key]


@dataclass(frozen=True)
class EventFacts:
    """What the rules read of one audit event. `detail` is the stored JSON text; its field list is
    parsed only when a rule needs it (an event that may hold a denial, or an L4 check out of hours):
    parsing every event's detail was most of the evaluator's time."""

    seq: int
    principal_id: str
    principal_kind: str | None
    consumer: str | None
    client_address: str | None
    occurred_at: datetime
    row_count: int
    detail: str = "{}"

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | RowMapping) -> EventFacts:
        return cls(
            int(row["seq"]),
            str(row["principal_id"]),
            row["principal_kind"],
            row["consumer"],
            row["client_address"],
            utc(row["occurred_at"]),
            int(row["row_count"] or 0),
            row["detail"] or "{}",
        )

    @functools.cached_property
    def _stored(self) -> list[Mapping[str, Any]] | None:
        return stored_fields(self.detail)

    @property
    def fields(self) -> list[Mapping[str, Any]]:
        """The field decisions; none for a detail that is not what the writer wrote (an edited
        row: `verify` reports it, and the rules must not stop there)."""
        return self._stored or []

    @property
    def readable(self) -> bool:
        return self._stored is not None

    @property
    def may_deny(self) -> bool:
        # A refused field is stored as the JSON string "deny" (under "action" or the older
        # "decision"); without that text the event refused nothing.
        return '"deny"' in self.detail

    def may_name(self, json_strings: Iterable[str]) -> bool:
        """Whether any of these JSON-encoded strings (e.g. field names) occurs in the detail."""
        return any(s in self.detail for s in json_strings)


class AlertState:
    """Everything the rules remember, fed one event at a time in seq order.

    `observe()` returns the alerts an event raises; with `raise_alerts=False` it only updates the
    state (catching up on events another worker evaluated). Address history is per principal and
    must be `load_addresses()`-ed (from `audit_alert_address`) before that principal's events are
    observed; `new_addresses` collects what to write back."""

    def __init__(self, rules: AlertRules) -> None:
        self.rules = rules
        self.bulk = SlidingSum(rules.bulk_window)
        self.probes = SlidingSum(rules.probe_window)
        self._addresses: dict[str, set[str]] = {}  # loaded principals → addresses seen
        self.new_addresses: dict[tuple[str, str], int] = {}  # (principal, address) → first seq
        self._l4: tuple[Mapping[tuple[str, str], int], tuple[str, ...]] | None = None
        self.unreadable: set[int] = set()  # seqs whose detail a rule needed and could not read

    def _l4_names(self, levels: Mapping[tuple[str, str], int]) -> tuple[str, ...]:
        """The L4 field names as they appear in a stored detail (JSON strings), per levels map."""
        if self._l4 is None or self._l4[0] is not levels:
            names = {orjson.dumps(f).decode() for (_, f), level in levels.items() if level >= 4}
            self._l4 = (levels, tuple(sorted(names)))
        return self._l4[1]

    def loaded(self, principal: str) -> bool:
        return principal in self._addresses

    def load_addresses(self, principal: str, addresses: Iterable[str]) -> None:
        self._addresses.setdefault(principal, set()).update(addresses)

    def forget_addresses(self) -> None:
        self._addresses.clear()
        self.new_addresses.clear()

    def observe(
        self, e: EventFacts, levels: Mapping[tuple[str, str], int], raise_alerts: bool = True
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []

        def alert(rule: str, summary: str, **info: Any) -> None:
            if raise_alerts:
                out.append(
                    {
                        "rule": rule,
                        "principal_id": e.principal_id,
                        "consumer": e.consumer,
                        "seq": e.seq,
                        "occurred_at": e.occurred_at,
                        "raised_at": datetime.now(UTC),
                        "summary": summary,
                        "detail": orjson.dumps(info).decode(),
                    }
                )

        at = e.occurred_at.timestamp()
        if e.row_count > 0:
            total = self.bulk.add(e.principal_id, at, e.row_count)
            if total >= self.rules.bulk_rows > total - e.row_count:
                alert(
                    "bulk_extraction",
                    f"{e.principal_id} read {total} rows within {self.rules.bulk_window} "
                    f"(threshold {self.rules.bulk_rows})",
                    rows=total,
                    window_seconds=self.rules.bulk_window.total_seconds(),
                )

        def fields() -> list[Mapping[str, Any]]:
            if not e.readable:
                self.unreadable.add(e.seq)
            return e.fields

        denied = denied_count(fields()) if e.may_deny else 0
        if denied:
            total = self.probes.add(e.principal_id, at, denied)
            if total >= self.rules.probe_denials > total - denied:
                alert(
                    "forbidden_probing",
                    f"{e.principal_id} was refused {total} fields within {self.rules.probe_window} "
                    f"(threshold {self.rules.probe_denials})",
                    denials=total,
                    window_seconds=self.rules.probe_window.total_seconds(),
                )

        if raise_alerts and not self.rules.working(e.occurred_at) and e.may_name(self._l4_names(levels)):
            l4 = sorted(
                {
                    f"{f.get('dataset')}.{f.get('field')}"
                    for f in fields()
                    if (f.get("action") or f.get("decision")) != "deny"
                    and levels.get((str(f.get("dataset")), str(f.get("field"))), 0) >= 4
                }
            )
            if l4:
                alert(
                    "l4_out_of_hours",
                    f"{e.principal_id} accessed L4 fields {', '.join(l4)} at "
                    f"{canonical_time(e.occurred_at)} outside working hours",
                    fields=l4,
                )

        if e.client_address and e.principal_kind != "anonymous":
            seen = self._addresses.get(e.principal_id)
            if seen is None:  # not loaded: only while catching up, whose pairs are stored already
                return out
            if e.client_address not in seen:
                if seen:  # a client's very first use only records its address
                    alert(
                        "new_address",
                        f"{e.principal_id} used from a new address {e.client_address}",
                        address=e.client_address,
                    )
                seen.add(e.client_address)
                if raise_alerts:
                    self.new_addresses.setdefault((e.principal_id, e.client_address), e.seq)
        return out
