"""Reading decisions back out of a stored detail: what the search index and the alert rules share."""

from __future__ import annotations

import pytest

from gateway.audit.detail import denied_count, first_decisions, stored_fields


@pytest.mark.parametrize(
    "detail", ["not json {", "[1, 2]", '"text"', '{"fields": {"dataset": "d"}}', '{"fields": [1]}']
)
def test_a_detail_the_writer_did_not_write_is_unreadable(detail: str) -> None:
    assert stored_fields(detail) is None


def test_readable_details() -> None:
    assert stored_fields(None) == [] and stored_fields('{"reads": []}') == []
    assert stored_fields('{"fields": [{"dataset": "d", "field": "f"}]}') == [{"dataset": "d", "field": "f"}]


def test_the_first_decision_per_field_counts_and_older_events_say_decision() -> None:
    fields = [
        {"dataset": "p", "field": "idNumber", "action": "deny"},
        {"dataset": "p", "field": "idNumber", "action": "allow"},  # the same field again: ignored
        {"dataset": "p", "field": "name", "decision": "deny"},  # before "action" was the key
        {"dataset": "p", "field": "phone", "action": "", "decision": "mask"},
        {"field": "orphan", "action": "deny"},
        {"dataset": "p", "field": "y", "action": "allow"},
        {"dataset": "p", "field": "y", "action": "deny"},  # refused after being allowed: not counted
    ]
    assert first_decisions(fields) == {
        ("p", "idNumber"): "deny",
        ("p", "name"): "deny",
        ("p", "phone"): "mask",
        ("", "orphan"): "deny",
        ("p", "y"): "allow",
    }
    assert denied_count(fields) == 3
