"""The officers' search index (audit_field_access), filled beside the request path.

The index is derived from each event's hashed `detail`: one row per (event, dataset, field), the
first decision listed, and one *dataset row* per (event, dataset) the event touched (field `''`,
action `''`: every dataset named in `fields` or `reads`, so a read that selected no field of it,
e.g. only `totalCount`, is found too). A search by dataset reads the dataset rows, newest first,
from the (dataset, field, seq) key and stops at the page's end; a search by field reads the field
rows. Being derived, the index need not be written in the append's transaction: the request waits
for its event, not for its index rows. Written there, a page of ten fields dirtied ten leaves of
the (dataset, field, seq) index per commit — most of PostgreSQL's work per appended event and half
of SQLite's. `index_pending` fills the rows of the events after `audit_index_cursor` in one
set-based statement per chunk and moves the cursor in the same transaction (the cursor row is
locked first, so two workers never index the same events at once). `FieldIndexTask` runs it
every second in the gateway, and every search that filters on the index runs it first, so
results are exact whatever the task's lag.

The set-based statement assumes what the writer wrote. If it fails on a chunk, the chunk is
indexed again event by event in Python, ignoring rows that already exist (on PostgreSQL the fast
statement has no ON CONFLICT, which cost 30% of its time; SQLite's INSERT OR IGNORE is free), and
leaving out, with a warning, any event whose `detail` cannot be read (not JSON, `fields` not a
list): only an edited row holds one, `verify` reports it, and it must not stop the index there,
or every later search on a dataset or field would fail."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.access_log import AccessEvent
from gateway.audit.background import PeriodicTask
from gateway.audit.detail import first_decisions, stored_fields, stored_reads
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent, AuditFieldAccess, AuditIndexCursor

log = logging.getLogger("shuqiao.audit")

CURSOR = AuditIndexCursor.__table__
HEAD = AuditChainHead.__table__
ACCESS = AuditFieldAccess.__table__
EVENTS = AuditEvent.__table__
CHUNK = 1000  # events per transaction (on SQLite the chain writer waits for it meanwhile)

DATASET_ROW = ""  # the field and action of a dataset row ("this event touched the dataset")

# DISTINCT ON / INSERT OR IGNORE in list order keep a field's first decision, as
# field_access_rows (the reference the tests compare with) does; the dataset rows come after the
# field rows (part 1: datasets of `fields`, part 2: of `reads`), so a field entry that names no
# field keeps its decision on the (dataset, '') row.
PG_ROWS = """
SELECT DISTINCT ON (e.seq, x.dataset, x.field) e.seq, x.dataset, x.field, x.action
FROM audit_event AS e
CROSS JOIN LATERAL (SELECT e.detail::jsonb AS d) AS j
CROSS JOIN LATERAL (
    SELECT coalesce(el->>'dataset', '') AS dataset, coalesce(el->>'field', '') AS field,
           coalesce(nullif(el->>'action', ''), el->>'decision', '') AS action, 0 AS part, ord
    FROM jsonb_array_elements(coalesce(j.d -> 'fields', '[]'::jsonb)) WITH ORDINALITY AS t(el, ord)
    UNION ALL
    SELECT el->>'dataset', '', '', 1, ord
    FROM jsonb_array_elements(coalesce(j.d -> 'fields', '[]'::jsonb)) WITH ORDINALITY AS t(el, ord)
    WHERE coalesce(el->>'dataset', '') <> ''
    UNION ALL
    SELECT el->>'dataset', '', '', 2, ord
    FROM jsonb_array_elements(CASE jsonb_typeof(j.d -> 'reads') WHEN 'array' THEN j.d -> 'reads'
                              ELSE '[]'::jsonb END) WITH ORDINALITY AS t(el, ord)
    WHERE jsonb_typeof(el) = 'object' AND coalesce(el->>'dataset', '') <> '') AS x
WHERE e.seq > :after AND e.seq <= :upto
ORDER BY e.seq, x.dataset, x.field, x.part, x.ord"""
PG_INDEX = text("INSERT INTO audit_field_access (seq, dataset, field, action)" + PG_ROWS)
SQLITE_ROWS = """
SELECT seq, dataset, field, action FROM (
    SELECT e.seq AS seq, coalesce(json_extract(j.value, '$.dataset'), '') AS dataset,
           coalesce(json_extract(j.value, '$.field'), '') AS field,
           coalesce(nullif(json_extract(j.value, '$.action'), ''), json_extract(j.value, '$.decision'), '')
               AS action, 0 AS part, j.key AS k
    FROM audit_event AS e, json_each(e.detail, '$.fields') AS j
    WHERE e.seq > :after AND e.seq <= :upto
    UNION ALL
    SELECT e.seq, json_extract(j.value, '$.dataset'), '', '', 1, j.key
    FROM audit_event AS e, json_each(e.detail, '$.fields') AS j
    WHERE e.seq > :after AND e.seq <= :upto AND coalesce(json_extract(j.value, '$.dataset'), '') <> ''
    UNION ALL
    SELECT e.seq, json_extract(j.value, '$.dataset'), '', '', 2, j.key
    FROM audit_event AS e, json_each(e.detail, '$.reads') AS j
    WHERE e.seq > :after AND e.seq <= :upto AND j.type = 'object'
          AND coalesce(json_extract(j.value, '$.dataset'), '') <> '')
ORDER BY seq, part, k"""
SQLITE_INDEX = text("INSERT OR IGNORE INTO audit_field_access (seq, dataset, field, action)" + SQLITE_ROWS)
assert AuditFieldAccess.__tablename__ == "audit_field_access"


def field_access_rows(seq: int, event: AccessEvent) -> list[dict[str, Any]]:
    """The search-index rows of one event: one per (dataset, field), the first decision listed,
    and one dataset row per dataset named in its fields or reads. PG_INDEX and SQLITE_INDEX
    derive the same rows in SQL from the stored `detail`; this is the reference they are tested
    against."""
    return _rows(seq, event.fields, event.reads)


def detail_rows(seq: int, detail: str | None) -> list[dict[str, Any]] | None:
    """The same rows from a stored `detail`; None if it cannot be read as the writer wrote it."""
    fields = stored_fields(detail)
    return None if fields is None else _rows(seq, fields, stored_reads(detail))


def index_keys(
    fields: Iterable[Mapping[str, Any]], reads: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, str], str]:
    """(dataset, field) → action of one event's index rows (dataset rows: field and action '')."""
    keys = first_decisions(fields)
    named = [d for d, _ in keys] + [str(r.get("dataset") or "") for r in reads if isinstance(r, Mapping)]
    for dataset in named:
        if dataset:
            keys.setdefault((dataset, DATASET_ROW), DATASET_ROW)
    return keys


def _rows(
    seq: int, fields: Iterable[Mapping[str, Any]], reads: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    return [
        {"seq": seq, "dataset": d, "field": f, "action": a} for (d, f), a in index_keys(fields, reads).items()
    ]


async def _lock_cursor(conn: AsyncConnection, sqlite: bool) -> int:
    if sqlite:
        # Take SQLite's write lock before reading, as the chain writer does with BEGIN IMMEDIATE:
        # a deferred transaction that read first could not upgrade after another worker wrote.
        await conn.execute(update(CURSOR).where(CURSOR.c.id == HEAD_ID).values(seq=CURSOR.c.seq))
    q = select(CURSOR.c.seq).where(CURSOR.c.id == HEAD_ID)
    seq = (await conn.execute(q if sqlite else q.with_for_update())).scalar()
    if seq is None:  # the migration seeds it; this covers tables made by metadata.create_all
        await conn.execute(CURSOR.insert().values(id=HEAD_ID, seq=0))
        return 0
    return int(seq)


async def index_pending(engine: AsyncEngine, chunk: int = CHUNK) -> int:
    """Index every event appended so far that is not indexed yet; returns how many events."""
    total = 0
    while True:
        try:
            done = await _index_chunk(engine, chunk, each=False)
        except DBAPIError:
            # Rolled back; whatever the cause, the per-event path reads what it can (and raises
            # again if the database itself is the problem).
            done = await _index_chunk(engine, chunk, each=True)
        total += done
        if done < chunk:  # through the head as it was: one transaction, not a second empty one
            return total


async def _index_chunk(engine: AsyncEngine, chunk: int, *, each: bool) -> int:
    """Index the next `chunk` events and move the cursor past them, in one transaction: set-based,
    or `each` event in Python. Returns how many events (0: none left)."""
    sqlite = engine.dialect.name == "sqlite"
    async with engine.begin() as conn:
        after = await _lock_cursor(conn, sqlite)
        head = int((await conn.execute(select(HEAD.c.seq).where(HEAD.c.id == HEAD_ID))).scalar() or 0)
        upto = min(head, after + chunk)
        if upto <= after:
            return 0
        if each:
            await _index_each(conn, sqlite, after, upto)
        else:
            await conn.execute(SQLITE_INDEX if sqlite else PG_INDEX, {"after": after, "upto": upto})
        await conn.execute(update(CURSOR).where(CURSOR.c.id == HEAD_ID).values(seq=upto))
    return upto - after


async def _index_each(conn: AsyncConnection, sqlite: bool, after: int, upto: int) -> None:
    stored = await conn.execute(
        select(EVENTS.c.seq, EVENTS.c.detail).where(EVENTS.c.seq > after, EVENTS.c.seq <= upto)
    )
    rows: list[dict[str, Any]] = []
    unreadable: list[int] = []
    for seq, detail in stored:
        found = detail_rows(int(seq), detail)
        if found is None:
            unreadable.append(int(seq))
        else:
            rows.extend(found)
    if unreadable:
        log.warning(
            "audit events %s: detail unreadable (edited?), left out of the search index; "
            "run `shuqiao audit verify`",
            unreadable,
        )
    if rows:
        ins = (sqlite_insert if sqlite else pg_insert)(ACCESS).on_conflict_do_nothing()
        await conn.execute(ins, rows)


class FieldIndexTask(PeriodicTask):
    """Fills the search index every `every` seconds."""

    name = "audit-field-index"

    def __init__(self, engine: AsyncEngine, every: float = 1.0) -> None:
        super().__init__(every)
        self.engine = engine

    async def step(self) -> None:
        await index_pending(self.engine)
