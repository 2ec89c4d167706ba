"""audit: the field-access search index is filled beside the request path; audit_index_cursor
says through which seq it is filled (seeded with the head: earlier events were indexed in their
append's transaction)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_index_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(
        "INSERT INTO audit_index_cursor (id, seq) SELECT 1, coalesce((SELECT max(seq) FROM audit_event), 0)"
    )


# Revision 0009's writer indexes each event in its append; before going back to it, index the
# events after the cursor, or they would never be. Frozen here as migrations are (the gateway's
# statement lives in gateway.audit.field_index and may change with later revisions).
_INDEX_REST = {
    "postgresql": """
INSERT INTO audit_field_access (seq, dataset, field, action)
SELECT DISTINCT ON (e.seq, x.dataset, x.field) e.seq, x.dataset, x.field, x.action
FROM audit_event AS e
CROSS JOIN LATERAL (
    SELECT coalesce(el->>'dataset', '') AS dataset, coalesce(el->>'field', '') AS field,
           coalesce(nullif(el->>'action', ''), el->>'decision', '') AS action, ord
    FROM jsonb_array_elements(coalesce(e.detail::jsonb -> 'fields', '[]'::jsonb))
         WITH ORDINALITY AS t(el, ord)) AS x
WHERE e.seq > (SELECT seq FROM audit_index_cursor WHERE id = 1)
ORDER BY e.seq, x.dataset, x.field, x.ord
ON CONFLICT DO NOTHING""",
    "sqlite": """
INSERT OR IGNORE INTO audit_field_access (seq, dataset, field, action)
SELECT e.seq, coalesce(json_extract(j.value, '$.dataset'), ''),
       coalesce(json_extract(j.value, '$.field'), ''),
       coalesce(nullif(json_extract(j.value, '$.action'), ''), json_extract(j.value, '$.decision'), '')
FROM audit_event AS e, json_each(e.detail, '$.fields') AS j
WHERE e.seq > (SELECT seq FROM audit_index_cursor WHERE id = 1)
ORDER BY e.seq, j.key""",
}


def downgrade() -> None:
    op.execute(_INDEX_REST[op.get_bind().dialect.name])
    op.drop_table("audit_index_cursor")
