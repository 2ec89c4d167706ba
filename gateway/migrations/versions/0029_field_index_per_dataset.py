"""audit_field_access: one row per (event, dataset), its fields and their decisions as arrays

The index held one row per (event, dataset, field) and one dataset row per (event, dataset):
~10 entries of the (dataset, field, seq) b-tree per lookup event, ~100 µs of PostgreSQL's CPU
per appended event. It now holds one row per (event, dataset) with the dataset's fields and the
first decision of each as parallel arrays (`fields`, `actions`: text[] on PostgreSQL, JSON arrays
in TEXT on SQLite), keyed (dataset, seq) (gateway.audit.field_index). The upgrade converts the
rows in place of re-reading the events: per (event, dataset), the field rows become the arrays
(in field order; the order the gateway writes is the detail's, no search depends on it) and the
dataset row (field '', action '') none. A row with field '' and another action, what a field
entry naming no field left on the dataset row, stays an entry with field '' as the gateway
writes it now.

The rows are copied into the new table in batches of BATCH seqs with a progress line each, all
in the migration's one transaction (a failure leaves nothing half-written); on PostgreSQL the key
and the BRIN seq index are built once at the end. The downgrade converts back.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-03 16:00:00
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
BATCH = 500_000  # seqs per statement
OLD = "audit_field_access_old"

# per (seq, dataset) of the old rows: the field rows' fields and actions (the dataset row has
# field '' and action ''; a '' field with an action was a field entry and stays one)
UP = {
    "postgresql": """
INSERT INTO audit_field_access (seq, dataset, fields, actions)
SELECT seq, dataset,
       coalesce(array_agg(field ORDER BY field) FILTER (WHERE field <> '' OR action <> ''), '{}'),
       coalesce(array_agg(action ORDER BY field) FILTER (WHERE field <> '' OR action <> ''), '{}')
FROM audit_field_access_old WHERE seq > :after AND seq <= :upto
GROUP BY seq, dataset""",
    "sqlite": """
INSERT INTO audit_field_access (seq, dataset, fields, actions)
SELECT seq, dataset, json_group_array(field) FILTER (WHERE field <> '' OR action <> ''),
       json_group_array(action) FILTER (WHERE field <> '' OR action <> '')
FROM (SELECT * FROM audit_field_access_old WHERE seq > :after AND seq <= :upto ORDER BY seq, dataset, field)
GROUP BY seq, dataset""",
}
# back: a dataset row for each named dataset without a '' entry, then a row per entry
DOWN = {
    "postgresql": """
INSERT INTO audit_field_access (seq, dataset, field, action)
SELECT seq, dataset, '', '' FROM audit_field_access_old
WHERE seq > :after AND seq <= :upto AND dataset <> '' AND NOT ('' = ANY(fields))
UNION ALL
SELECT a.seq, a.dataset, u.field, u.action
FROM audit_field_access_old AS a, unnest(a.fields, a.actions) AS u(field, action)
WHERE a.seq > :after AND a.seq <= :upto""",
    "sqlite": """
INSERT INTO audit_field_access (seq, dataset, field, action)
SELECT seq, dataset, '', '' FROM audit_field_access_old AS a
WHERE seq > :after AND seq <= :upto AND dataset <> ''
      AND NOT EXISTS (SELECT 1 FROM json_each(a.fields) WHERE value = '')
UNION ALL
SELECT a.seq, a.dataset, j.value, json_extract(a.actions, '$[' || j.key || ']')
FROM audit_field_access_old AS a, json_each(a.fields) AS j
WHERE a.seq > :after AND a.seq <= :upto""",
}


def _rebuild(columns: list[sa.Column[Any]], key: tuple[str, ...], copy: dict[str, str], what: str) -> None:
    """Rename the table away, create the new shape, copy the rows over in batches, drop the old."""
    conn = op.get_bind()
    postgres = conn.dialect.name == "postgresql"
    op.rename_table("audit_field_access", OLD)
    if postgres:  # free the names for the new table's
        op.execute(f"ALTER INDEX audit_field_access_pkey RENAME TO {OLD}_pkey")
        op.execute(f"ALTER INDEX ix_audit_field_access_seq RENAME TO ix_{OLD}_seq")
        # no key while it is filled: built once at the end, not entry by entry
        op.create_table("audit_field_access", *columns)
    else:
        op.create_table(
            "audit_field_access",
            *columns,
            sa.PrimaryKeyConstraint(*key, name="audit_field_access_pkey"),
            sqlite_with_rowid=False,
        )
    first, last = conn.execute(sa.text(f"SELECT min(seq), max(seq) FROM {OLD}")).one()  # noqa: S608
    if first is not None:
        statement = sa.text(copy[conn.dialect.name])
        after, started, total = int(first) - 1, time.monotonic(), int(last) - int(first) + 1
        log.info("audit search index: %s, seqs %d..%d, %d a batch", what, first, last, BATCH)
        while after < last:
            upto = min(int(last), after + BATCH)
            conn.execute(statement, {"after": after, "upto": upto})
            done = upto - int(first) + 1
            log.info(
                "audit search index: %d / %d seqs (%.0f%%, %.0fs)",
                done,
                total,
                100 * done / total,
                time.monotonic() - started,
            )
            after = upto
    op.drop_table(OLD)  # with its indexes
    if postgres:
        op.create_primary_key("audit_field_access_pkey", "audit_field_access", list(key))
    op.create_index("ix_audit_field_access_seq", "audit_field_access", ["seq"], postgresql_using="brin")


def _list() -> sa.types.TypeEngine[Any]:
    return sa.Text().with_variant(sa.dialects.postgresql.ARRAY(sa.Text()), "postgresql")


def upgrade() -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("dataset", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("fields", _list(), nullable=False),
        sa.Column("actions", _list(), nullable=False),
    ]
    _rebuild(columns, ("dataset", "seq"), UP, "one row per (event, dataset)")


def downgrade() -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("dataset", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("action", sa.String(), nullable=False),
    ]
    _rebuild(columns, ("dataset", "field", "seq"), DOWN, "back to one row per (event, dataset, field)")
