"""audit_field_access: a dataset row per (event, dataset) the event touched, backfilled

The officers' search by dataset also finds reads that selected no field of it (only
`totalCount`); it found them with `detail LIKE '%"dataset":"…"%'`, a scan of every event (16 s at
2,850,000 events). The index now holds one row per (event, dataset) with field '' and action ''
(gateway.audit.field_index), and the search reads those rows, newest first. This fills them for
the events already indexed (through `audit_index_cursor`; later ones are indexed by the gateway
with the new rows), in batches of BATCH events, with a progress line each, all in the migration's
one transaction: a failure leaves nothing half-written.

A batch whose `detail` PostgreSQL cannot read (an edited row: not JSON) is done again event by
event in Python, leaving out, with a warning, an event it cannot read either, as the gateway's
index does (`shuqiao audit verify` reports the edit).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
BATCH = 100_000

PG_FILL = sa.text("""
INSERT INTO audit_field_access (seq, dataset, field, action)
SELECT DISTINCT e.seq, x.dataset, '', ''
FROM audit_event AS e
CROSS JOIN LATERAL (SELECT e.detail::jsonb AS d) AS j
CROSS JOIN LATERAL (
    SELECT el->>'dataset' AS dataset
    FROM jsonb_array_elements(CASE jsonb_typeof(j.d -> 'fields') WHEN 'array' THEN j.d -> 'fields'
                              ELSE '[]'::jsonb END) AS el
    WHERE jsonb_typeof(el) = 'object'
    UNION ALL
    SELECT el->>'dataset'
    FROM jsonb_array_elements(CASE jsonb_typeof(j.d -> 'reads') WHEN 'array' THEN j.d -> 'reads'
                              ELSE '[]'::jsonb END) AS el
    WHERE jsonb_typeof(el) = 'object') AS x
WHERE e.seq > :after AND e.seq <= :upto AND coalesce(x.dataset, '') <> ''
ON CONFLICT DO NOTHING""")
SQLITE_FILL = sa.text("""
INSERT OR IGNORE INTO audit_field_access (seq, dataset, field, action)
SELECT e.seq, json_extract(j.value, '$.dataset'), '', ''
FROM audit_event AS e, json_each(e.detail, '$.fields') AS j
WHERE e.seq > :after AND e.seq <= :upto AND j.type = 'object'
      AND coalesce(json_extract(j.value, '$.dataset'), '') <> ''
UNION ALL
SELECT e.seq, json_extract(j.value, '$.dataset'), '', ''
FROM audit_event AS e, json_each(e.detail, '$.reads') AS j
WHERE e.seq > :after AND e.seq <= :upto AND j.type = 'object'
      AND coalesce(json_extract(j.value, '$.dataset'), '') <> ''""")


def _datasets(detail: str | None) -> set[str] | None:
    """The datasets one stored detail names (in `fields` or `reads`); None if unreadable."""
    try:
        doc = json.loads(detail or "{}")
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    named: set[str] = set()
    for key in ("fields", "reads"):
        entries = doc.get(key) or []
        if isinstance(entries, list):
            named.update(str(e.get("dataset") or "") for e in entries if isinstance(e, dict))
    named.discard("")
    return named


def _fill_each(conn: Connection, sqlite: bool, after: int, upto: int) -> None:
    rows: list[dict[str, Any]] = []
    for seq, detail in conn.execute(
        sa.text("SELECT seq, detail FROM audit_event WHERE seq > :after AND seq <= :upto"),
        {"after": after, "upto": upto},
    ):
        named = _datasets(detail)
        if named is None:
            log.warning("audit event %s: detail unreadable (edited?), left out of the search index", seq)
            continue
        rows.extend({"seq": seq, "dataset": d} for d in sorted(named))
    if rows:
        verb = "INSERT OR IGNORE" if sqlite else "INSERT"
        tail = "" if sqlite else " ON CONFLICT DO NOTHING"
        conn.execute(
            sa.text(
                f"{verb} INTO audit_field_access (seq, dataset, field, action)"
                f" VALUES (:seq, :dataset, '', ''){tail}"
            ),
            rows,
        )


def upgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    through = conn.execute(sa.text("SELECT max(seq) FROM audit_index_cursor")).scalar()
    first = conn.execute(sa.text("SELECT min(seq) FROM audit_event")).scalar()
    if not through or first is None or first > through:
        return
    after, started = int(first) - 1, time.monotonic()
    total = int(through) - after
    log.info("audit search index: dataset rows for %d events, %d a batch", total, BATCH)
    while after < through:
        upto = min(int(through), after + BATCH)
        # a failed statement aborts PostgreSQL's transaction (hence the savepoint), not SQLite's
        savepoint = None if sqlite else conn.begin_nested()
        try:
            conn.execute(SQLITE_FILL if sqlite else PG_FILL, {"after": after, "upto": upto})
        except sa.exc.DBAPIError:
            if savepoint is not None:
                savepoint.rollback()
            _fill_each(conn, sqlite, after, upto)
        else:
            if savepoint is not None:
                savepoint.commit()
        done = upto - int(first) + 1
        log.info(
            "audit search index: %d / %d events (%.0f%%, %.0fs)",
            done,
            total,
            100 * done / total,
            time.monotonic() - started,
        )
        after = upto


def downgrade() -> None:
    op.execute("DELETE FROM audit_field_access WHERE field = '' AND action = ''")
