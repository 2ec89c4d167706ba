"""audit_event: partitioned by month of occurred_at on PostgreSQL, key (seq, occurred_at) there

At 10,000,000 events retention's DELETE of a month is a long write of every row and index entry
(and the bloat vacuum must then reclaim); dropping the month's partition is a catalogue change.
The table becomes `PARTITION BY RANGE (occurred_at)` with one partition per UTC month
(`audit_event_y2026m12` holds [2026-12-01, 2027-01-01) UTC), from the oldest event's month through
three months ahead, plus `audit_event_default`, the safety net: an append never fails for want of
a partition (the log is fail closed), and `shuqiao audit partitions` moves such rows into their
month (gateway.audit.partitions, which also runs at start-up and daily).

A partitioned table's key must hold its partition key, so PostgreSQL's key is (seq, occurred_at);
seq alone stays unique by construction: the writer assigns it under the chain head's lock, and
`verify` reports a duplicate. SQLite is left as it is (one table, key seq, which also refuses a
duplicate seq), and so is the model, which describes the table, not its partitioning (alembic's
autogenerate compares neither keys nor, with gateway.audit.partitions.include_name, the
partitions). The indexes keep their names; PostgreSQL makes each one per partition.

The upgrade copies the table in one transaction (plan for it on a large log: appends wait for it).
audit_field_access is not partitioned: its rows are deleted by seq range (BRIN), see docs/audit.md.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

INDEXES: tuple[tuple[str, str], ...] = (
    ("ix_audit_event_occurred_at", "occurred_at"),
    ("ix_audit_event_consumer", "consumer, seq"),
    ("ix_audit_event_principal_id", "principal_id, seq"),
    ("ix_audit_event_subject", "subject, seq"),
)
AHEAD = 3  # months created ahead of the current one (gateway.audit.partitions.AHEAD)


def _month(year: int, month: int, plus: int = 0) -> tuple[int, int]:
    index = year * 12 + (month - 1) + plus
    return index // 12, index % 12 + 1


def _partition_sql(year: int, month: int) -> str:
    ny, nm = _month(year, month, 1)
    return (
        f"CREATE TABLE IF NOT EXISTS audit_event_y{year:04d}m{month:02d} PARTITION OF audit_event "
        f"FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00:00+00') TO ('{ny:04d}-{nm:02d}-01 00:00:00+00')"
    )


def _swap(old: str, create: str) -> None:
    """Rename audit_event to `old`, free its index names, create the new audit_event (`create`)."""
    op.execute(f"ALTER TABLE audit_event RENAME TO {old}")
    op.execute(f"ALTER INDEX audit_event_pkey RENAME TO {old}_pkey")
    for name, _ in INDEXES:
        op.execute(f"DROP INDEX {name}")  # the old table goes; its rows are copied before that
    op.execute(create.format(old=old))


def _index(key: str) -> None:
    op.execute(f"ALTER TABLE audit_event ADD CONSTRAINT audit_event_pkey PRIMARY KEY ({key})")
    for name, columns in INDEXES:
        op.execute(f"CREATE INDEX {name} ON audit_event ({columns})")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return  # SQLite: one table, key seq, as before
    _swap(
        "audit_event_unpartitioned",
        "CREATE TABLE audit_event (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at)",
    )
    now = datetime.now(UTC)
    oldest, newest = bind.exec_driver_sql(
        "SELECT min(occurred_at), max(occurred_at) FROM audit_event_unpartitioned"
    ).one()
    # every month from the oldest event's through three ahead of now (or of the newest event)
    year, month = _ym(oldest) if oldest is not None else (now.year, now.month)
    last = max(_month(now.year, now.month, AHEAD), _ym(newest) if newest is not None else (0, 0))
    while (year, month) <= last:
        op.execute(_partition_sql(year, month))
        year, month = _month(year, month, 1)
    op.execute("CREATE TABLE audit_event_default PARTITION OF audit_event DEFAULT")
    op.execute("INSERT INTO audit_event SELECT * FROM audit_event_unpartitioned")
    op.execute("DROP TABLE audit_event_unpartitioned")
    _index("seq, occurred_at")
    op.execute("ANALYZE audit_event")


def _ym(value: datetime) -> tuple[int, int]:
    value = value.astimezone(UTC)
    return value.year, value.month


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _swap("audit_event_partitioned", "CREATE TABLE audit_event (LIKE {old} INCLUDING DEFAULTS)")
    op.execute("INSERT INTO audit_event SELECT * FROM audit_event_partitioned ORDER BY seq")
    op.execute("DROP TABLE audit_event_partitioned")  # with every partition
    _index("seq")
