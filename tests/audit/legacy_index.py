"""The field index as it was before migration 0029 (one row per (event, dataset, field), plus a
dataset row per (event, dataset): field '' and action ''), for the tests of the migrations that
ran on it. The current shape is gateway.audit.models.AuditFieldAccess."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway.access_log import AccessEvent
from gateway.audit.field_index import index_keys

LEGACY_ACCESS = sa.table(
    "audit_field_access",
    sa.column("seq", sa.BigInteger()),
    sa.column("dataset", sa.String()),
    sa.column("field", sa.String()),
    sa.column("action", sa.String()),
)


def legacy_rows(seq: int, event: AccessEvent) -> list[dict[str, Any]]:
    """The rows the indexer wrote before 0029: a field row per entry of `index_keys`, and a
    dataset row per named dataset that has no entry of field '' (that entry's row was it)."""
    rows = []
    for dataset, entries in index_keys(event.fields, event.reads).items():
        if dataset and "" not in entries:
            rows.append({"seq": seq, "dataset": dataset, "field": "", "action": ""})
        rows.extend({"seq": seq, "dataset": dataset, "field": f, "action": a} for f, a in entries.items())
    return rows
