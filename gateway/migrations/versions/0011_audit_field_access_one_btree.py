"""audit: the search index keeps one b-tree, keyed (dataset, field, seq) as searches use it,
instead of two; the seq index is BRIN on PostgreSQL, and SQLite stores the table WITHOUT ROWID

Filling the index was most of PostgreSQL's work per appended event (60 µs, 35 with this shape).
The upgrade copies the table in one transaction: on a large index, plan for it (the gateway's
indexer waits for the lock; requests and appends do not touch this table).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 02:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = "seq, dataset, field, action"


def _rebuild(key: tuple[str, ...], *, one_btree: bool) -> None:
    """Copy the index into a table of the new shape (rows are kept; the new key is unique too)."""
    postgres = op.get_bind().dialect.name == "postgresql"
    op.rename_table("audit_field_access", "audit_field_access_old")
    if postgres:  # the old primary key's index name must be free for the new table's
        op.execute("ALTER INDEX audit_field_access_pkey RENAME TO audit_field_access_old_pkey")
    op.create_table(
        "audit_field_access",
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint(*key, name="audit_field_access_pkey"),
        sqlite_with_rowid=not one_btree,
    )
    op.execute(
        f"INSERT INTO audit_field_access ({COLUMNS}) "  # noqa: S608
        f"SELECT {COLUMNS} FROM audit_field_access_old"
    )
    op.drop_table("audit_field_access_old")  # with its indexes


def upgrade() -> None:
    _rebuild(("dataset", "field", "seq"), one_btree=True)
    op.create_index("ix_audit_field_access_seq", "audit_field_access", ["seq"], postgresql_using="brin")


def downgrade() -> None:
    _rebuild(("seq", "dataset", "field"), one_btree=False)
    op.create_index("ix_audit_field_access_dataset_field", "audit_field_access", ["dataset", "field", "seq"])
