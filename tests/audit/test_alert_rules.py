"""The alert rules' in-memory state (gateway/audit/alert_rules.py): sliding windows to the second,
distinct denials, the address history, and catching up without raising alerts."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import orjson

from gateway.audit.alert_rules import AlertRules, AlertState, EventFacts, SlidingSum

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Beijing
ALWAYS = dict(work_start=time(0, 0), work_end=time.max, work_days=frozenset(range(1, 8)))


def facts(
    seq: int,
    *,
    principal: str = "a",
    seconds: float = 0,
    rows: int = 0,
    denied: int = 0,
    address: str | None = "10.0.0.1",
    kind: str = "department",
    fields: list[dict[str, Any]] | None = None,
) -> EventFacts:
    fs = (
        fields
        if fields is not None
        else [{"dataset": "population", "field": f"f{seq}_{i}", "action": "deny"} for i in range(denied)]
    )
    detail = orjson.dumps({"fields": fs, "reads": []}, option=orjson.OPT_SORT_KEYS).decode()  # as stored
    return EventFacts(seq, principal, kind, "samr", address, T0 + timedelta(seconds=seconds), rows, detail)


def rules_raised(
    state: AlertState, events: list[EventFacts], levels: dict[tuple[str, str], int] | None = None
) -> list[tuple[str, int]]:
    return [(a["rule"], a["seq"]) for e in events for a in state.observe(e, levels or {})]


def test_sliding_sum_counts_the_window_to_the_second() -> None:
    window = SlidingSum(timedelta(seconds=10))
    assert window.add("a", 100.2, 5) == 5
    assert window.add("a", 105.9, 1) == 6
    assert window.add("b", 106.0, 7) == 7  # keys are independent
    assert window.add("a", 110.0, 1) == 7  # 100.2 is in [floor(110 - 10), 110]
    assert window.add("a", 111.0, 1) == 3  # ... and not in [101, 111]
    assert window.add("a", 200.0, 0) == 0
    assert window.total("b") == 7


def test_sliding_sum_merges_a_second_and_forgets_quiet_keys() -> None:
    window = SlidingSum(timedelta(seconds=5))
    for i in range(10):
        window.add("burst", 50.1 + i / 100, 1)
    assert window.total("burst") == 10 and len(window._buckets["burst"]) == 1
    for i in range(10_000):  # enough adds to trigger a sweep, long after "burst" went quiet
        window.add("other", 1000.0 + i, 1)
    assert "burst" not in window._buckets and window.total("burst") == 0
    assert window.total("other") == 6  # [floor(10999 - 5), 10999]: six one-second buckets


def test_bulk_extraction_raises_once_when_the_window_crosses_the_threshold() -> None:
    state = AlertState(AlertRules(bulk_rows=100, bulk_window=timedelta(minutes=1), **ALWAYS))
    raised = rules_raised(
        state,
        [
            facts(1, rows=60),
            facts(2, rows=30, seconds=10),
            facts(3, rows=20, seconds=20),  # 110: raised
            facts(4, rows=50, seconds=30),  # 160: still over, not raised again
            facts(5, rows=90, seconds=200),  # the window emptied: 90
            facts(6, rows=10, seconds=201),  # 100 again: raised again
        ],
    )
    assert raised == [("bulk_extraction", 3), ("bulk_extraction", 6)]


def test_probing_counts_denials_within_its_window_per_principal() -> None:
    state = AlertState(AlertRules(probe_denials=5, probe_window=timedelta(minutes=10), **ALWAYS))
    raised = rules_raised(
        state,
        [
            facts(1, denied=3),
            facts(2, principal="b", denied=4),
            facts(3, denied=1, seconds=700),  # 1 in window
            facts(4, denied=4, seconds=701),  # 5: raised
        ],
    )
    assert raised == [("forbidden_probing", 4)]


def test_l4_only_outside_working_hours_and_never_for_denied_fields() -> None:
    levels = {("population", "id_number"): 4}
    l4 = [{"dataset": "population", "field": "id_number", "action": "mask"}]
    denied = [{"dataset": "population", "field": "id_number", "action": "deny"}]
    inside = AlertState(AlertRules())
    assert rules_raised(inside, [facts(1, fields=l4)], levels) == []  # Monday 10:00 Beijing
    outside = AlertState(AlertRules(work_days=frozenset({6, 7})))
    assert rules_raised(outside, [facts(1, fields=l4), facts(2, fields=denied)], levels) == [
        ("l4_out_of_hours", 1)
    ]


def test_new_address_needs_a_known_history_and_skips_anonymous_callers() -> None:
    state = AlertState(AlertRules(**ALWAYS))
    for p in ("c", "fresh"):
        state.load_addresses(p, ["10.0.0.1"] if p == "c" else [])
    raised = rules_raised(
        state,
        [
            facts(1, principal="c", address="10.0.0.1"),
            facts(2, principal="c", address="10.9.9.9"),
            facts(3, principal="c", address="10.9.9.9"),
            facts(4, principal="fresh", address="10.1.1.1"),
            facts(5, principal="anonymous", kind="anonymous", address="1.2.3.4"),
        ],
    )
    assert raised == [("new_address", 2)]
    assert state.new_addresses == {("c", "10.9.9.9"): 2, ("fresh", "10.1.1.1"): 4}


def test_catching_up_updates_windows_and_addresses_without_raising() -> None:
    state = AlertState(AlertRules(bulk_rows=100, **ALWAYS))
    state.load_addresses("a", ["10.0.0.1"])
    assert state.observe(facts(1, rows=150, address="10.2.2.2"), {}, raise_alerts=False) == []
    assert state.new_addresses == {}  # another worker stored what it evaluated
    # the replayed rows count, and the replayed address is now known
    assert rules_raised(state, [facts(2, rows=1, address="10.2.2.2", seconds=1)]) == []
    assert state.bulk.total("a") == 151


def test_l4_field_names_are_matched_as_stored_including_non_ascii_and_other_datasets() -> None:
    """The evaluator reads an event's field list only when its stored detail names an L4 field;
    that check must never miss one (here a non-ASCII name, and the same name at a lower level in
    another dataset, which must not raise)."""
    outside = AlertState(AlertRules(work_days=frozenset({6, 7})))
    levels = {("人口", "身份证号"): 4, ("企业", "身份证号"): 2, ("人口", "姓名"): 3}
    served = [{"dataset": "人口", "field": "身份证号", "action": "encrypt"}]
    elsewhere = [{"dataset": "企业", "field": "身份证号", "action": "allow"}]
    only_l3 = [{"dataset": "人口", "field": "姓名", "action": "mask"}]
    assert rules_raised(
        outside, [facts(1, fields=served), facts(2, fields=elsewhere), facts(3, fields=only_l3)], levels
    ) == [("l4_out_of_hours", 1)]
