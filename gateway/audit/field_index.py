"""The officers' search index (audit_field_access), filled beside the request path.

The index is derived from each event's hashed `detail`: one row per (event, dataset) the event
touched — every dataset named in `fields` or `reads`, so a read that selected no field of it,
e.g. only `totalCount`, is found too — holding that dataset's fields and the first decision
listed for each, as two parallel arrays (`fields`, `actions`: text[] on PostgreSQL, JSON arrays
on SQLite; a dataset read without a field has empty ones). A search by dataset reads the rows
newest first from the (dataset, seq) key and stops at the page's end; a field or a decision is a
test on the arrays (`entry_match`). Until migration 0029 the index held one row per (event,
dataset, field) plus a dataset row: ~10 b-tree entries per lookup event, most of PostgreSQL's
CPU per appended event with the hash-chained audit; now ~1.

Being derived, the index need not be written in the append's transaction: the request waits for
its event, not for its index rows. `index_pending` fills the rows of the events after
`audit_index_cursor` in one set-based statement per chunk and moves the cursor in the same
transaction (the cursor row is locked first, so two workers never index the same events at
once). `FieldIndexTask` runs it every second in the gateway, and every search that filters on
the index runs it first, so results are exact whatever the task's lag.

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

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Subquery,
    Text,
    any_,
    exists,
    func,
    literal,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.access_log import AccessEvent
from gateway.audit.background import PeriodicTask
from gateway.audit.detail import first_decisions, stored_fields, stored_reads
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent, AuditFieldAccess, AuditIndexCursor
from gateway.db import table_of

log = logging.getLogger("shuqiao.audit")

CURSOR = table_of(AuditIndexCursor)
HEAD = table_of(AuditChainHead)
ACCESS = table_of(AuditFieldAccess)
EVENTS = table_of(AuditEvent)
CHUNK = 1000  # events per transaction (on SQLite the chain writer waits for it meanwhile)

Entries = dict[str, str]  # one dataset's fields → the first decision listed for each

# Inner query: one line per (event, dataset, field) with its first decision (DISTINCT ON in list
# order, as `index_keys`, the reference the tests compare with, keeps it) and one line with no
# field per dataset read; outer: one row per (event, dataset), the fields in list order. OFFSET 0
# keeps PostgreSQL from inlining the cast into each of its four uses (a parse each: ~30% of the
# statement's time).
PG_INDEX = text("""
INSERT INTO audit_field_access (seq, dataset, fields, actions)
SELECT seq, dataset,
       coalesce(array_agg(field ORDER BY ord) FILTER (WHERE field IS NOT NULL), '{}'),
       coalesce(array_agg(action ORDER BY ord) FILTER (WHERE field IS NOT NULL), '{}')
FROM (
    SELECT DISTINCT ON (e.seq, x.dataset, x.field) e.seq, x.dataset, x.field, x.action, x.ord
    FROM audit_event AS e
    CROSS JOIN LATERAL (SELECT e.detail::jsonb AS d OFFSET 0) AS j  -- parsed once, not per use
    CROSS JOIN LATERAL (
        SELECT coalesce(el->>'dataset', '') AS dataset, coalesce(el->>'field', '') AS field,
               coalesce(nullif(el->>'action', ''), el->>'decision', '') AS action, ord
        FROM jsonb_array_elements(coalesce(j.d -> 'fields', '[]'::jsonb)) WITH ORDINALITY AS t(el, ord)
        UNION ALL
        SELECT el->>'dataset', NULL, NULL, ord
        FROM jsonb_array_elements(CASE jsonb_typeof(j.d -> 'reads') WHEN 'array' THEN j.d -> 'reads'
                                  ELSE '[]'::jsonb END) WITH ORDINALITY AS t(el, ord)
        WHERE jsonb_typeof(el) = 'object' AND coalesce(el->>'dataset', '') <> '') AS x
    WHERE e.seq > :after AND e.seq <= :upto
    ORDER BY e.seq, x.dataset, x.field, x.ord) AS firsts
GROUP BY seq, dataset""")
# SQLite: min(k) picks the first entry's decision (a bare column beside min() comes from that
# row); both json_group_array() of a group read its rows in the same order, so they stay paired.
SQLITE_INDEX = text("""
INSERT OR IGNORE INTO audit_field_access (seq, dataset, fields, actions)
SELECT seq, dataset, json_group_array(field) FILTER (WHERE field IS NOT NULL),
       json_group_array(action) FILTER (WHERE field IS NOT NULL)
FROM (
    SELECT seq, dataset, field, action, min(k) AS k FROM (
        SELECT e.seq AS seq, coalesce(json_extract(j.value, '$.dataset'), '') AS dataset,
               coalesce(json_extract(j.value, '$.field'), '') AS field,
               coalesce(nullif(json_extract(j.value, '$.action'), ''),
                        json_extract(j.value, '$.decision'), '') AS action, j.key AS k
        FROM audit_event AS e, json_each(e.detail, '$.fields') AS j
        WHERE e.seq > :after AND e.seq <= :upto)
    GROUP BY seq, dataset, field
    UNION ALL
    SELECT e.seq, json_extract(j.value, '$.dataset'), NULL, NULL, NULL
    FROM audit_event AS e, json_each(e.detail, '$.reads') AS j
    WHERE e.seq > :after AND e.seq <= :upto AND j.type = 'object'
          AND coalesce(json_extract(j.value, '$.dataset'), '') <> ''
    ORDER BY 1, 2, 5)
GROUP BY seq, dataset""")
assert AuditFieldAccess.__tablename__ == "audit_field_access"


def index_keys(fields: Iterable[Mapping[str, Any]], reads: Iterable[Any]) -> dict[str, Entries]:
    """One event's index: dataset → {field: first decision}, for every dataset named in its
    fields or reads (a dataset only read: no entries). PG_INDEX and SQLITE_INDEX derive the same
    in SQL from the stored `detail`; this is the reference they are tested against, and what the
    archive search (gateway.audit.history) matches with."""
    keys: dict[str, Entries] = {}
    for (dataset, field), action in first_decisions(fields).items():
        keys.setdefault(dataset, {})[field] = action
    for r in reads:
        if isinstance(r, Mapping) and r.get("dataset"):
            keys.setdefault(str(r["dataset"]), {})
    return keys


def index_match(
    keys: Mapping[str, Entries], dataset: str | None, field: str | None, decision: str | None
) -> bool:
    """Whether one event's index (`index_keys`) matches the index filters, as `matched` does in
    SQL: a row of the dataset (any, if none is given) with, when a field or a decision is given,
    an entry of that field and that decision."""
    for ds, entries in keys.items():
        if dataset is not None and ds != dataset:
            continue
        if field is not None:
            if field in entries and (decision is None or entries[field] == decision):
                return True
        elif decision is None or decision in entries.values():
            return True
    return False


def field_access_rows(seq: int, event: AccessEvent) -> list[dict[str, Any]]:
    """The index rows of one event (`index_keys`), as the table holds them."""
    return _rows(seq, event.fields, event.reads)


def detail_rows(seq: int, detail: str | None) -> list[dict[str, Any]] | None:
    """The same rows from a stored `detail`; None if it cannot be read as the writer wrote it."""
    fields = stored_fields(detail)
    return None if fields is None else _rows(seq, fields, stored_reads(detail))


def _rows(seq: int, fields: Iterable[Mapping[str, Any]], reads: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"seq": seq, "dataset": d, "fields": list(e), "actions": list(e.values())}
        for d, e in index_keys(fields, reads).items()
    ]


def matched(sqlite: bool, dataset: str | None, field: str | None, decision: str | None) -> Any:
    """The seqs of the events whose index matches (`index_match`): the rows of the dataset, newest
    first from the (dataset, seq) key, tested on their arrays. An event appears once per
    matching dataset: once when a dataset is given."""
    conds: list[Any] = [ACCESS.c.dataset == dataset] if dataset is not None else []
    if field is not None or decision is not None:
        conds.append(entry_match(sqlite, field, decision))
    return select(ACCESS.c.seq).where(*conds)


def entry_match(sqlite: bool, field: str | None, decision: str | None) -> ColumnElement[bool]:
    """An entry of the row's arrays has that field (if given) and that decision (if given). On
    PostgreSQL a field occurs at most once in a row, so its decision is at the same position."""
    fields, actions = ACCESS.c.fields, ACCESS.c.actions
    if not sqlite:
        if field is None:
            return literal(decision) == any_(actions)
        has = literal(field) == any_(fields)
        if decision is None:
            return has
        return has & (type_coerce(actions, ARRAY(Text))[func.array_position(fields, field)] == decision)
    each = func.json_each(fields).table_valued("key", "value").alias("entry")
    conds: list[Any] = [] if field is None else [each.c.value == field]
    if decision is not None:
        conds.append(func.json_extract(actions, "$[" + func.cast(each.c.key, Text) + "]") == decision)
    return exists(select(literal(1)).select_from(each).where(*conds))


def field_entries(sqlite: bool) -> Subquery:
    """(seq, dataset, field, action): one line per field entry of the index (a dataset read
    without a field has none), for the reports that count field decisions."""
    if sqlite:
        sql = """SELECT a.seq AS seq, a.dataset AS dataset, j.value AS field,
                        json_extract(a.actions, '$[' || j.key || ']') AS action
                 FROM audit_field_access AS a, json_each(a.fields) AS j"""
    else:
        sql = """SELECT a.seq, a.dataset, u.field, u.action
                 FROM audit_field_access AS a, unnest(a.fields, a.actions) AS u(field, action)"""
    cols = {"seq": BigInteger, "dataset": Text, "field": Text, "action": Text}
    return text(sql).columns(**{k: v() for k, v in cols.items()}).subquery("field_entry")


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
