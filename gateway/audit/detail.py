"""Reading the field decisions back out of a stored event's `detail` (pure, no I/O).

The writer stores `{"fields": [{"dataset", "field", "action", "reason", ...}, ...], "reads": ...}`
(older events say "decision" for "action"). The search index and the alert rules both read it
back from the table, where an edited row may hold anything: `stored_fields` returns None for a
detail that is not what the writer wrote, so each reader can leave that event out (and say so)
instead of stopping at it. `verify` is what reports the edit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

FieldKey = tuple[str, str]  # (dataset, field)


def stored_fields(detail: str | None) -> list[Mapping[str, Any]] | None:
    """The field list of a stored detail; None if it cannot be read as the writer wrote it."""
    try:
        fields = orjson.loads(detail or "{}").get("fields", [])
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        return None
    return fields


def stored_reads(detail: str | None) -> list[Mapping[str, Any]]:
    """The read list of a stored detail (one entry per dataset read, whether or not a field of it
    was selected); entries that are not objects, or a list that is not one, are left out."""
    try:
        reads = orjson.loads(detail or "{}").get("reads", [])
    except (orjson.JSONDecodeError, AttributeError):
        return []
    return [r for r in reads if isinstance(r, dict)] if isinstance(reads, list) else []


def first_decisions(fields: Iterable[Mapping[str, Any]]) -> dict[FieldKey, str]:
    """One decision per (dataset, field): the first listed, as the search index stores it (a
    field read twice in one query, once allowed and once refused, is indexed as the first)."""
    seen: dict[FieldKey, str] = {}
    for f in fields:
        key = (str(f.get("dataset") or ""), str(f.get("field") or ""))
        seen.setdefault(key, str(f.get("action") or f.get("decision") or ""))
    return seen


def denied_count(fields: Iterable[Mapping[str, Any]]) -> int:
    """Distinct fields refused in one event, counted as the search index counts them."""
    return sum(1 for action in first_decisions(fields).values() if action == "deny")
