"""Search by dataset through the field index and capped totals, on SQLite and PostgreSQL: the index
holds one row per (event, dataset) touched, its fields and their first decisions as arrays
(migration 0029), derived in SQL exactly as the reference does; a search by dataset finds the same
events as the old `detail LIKE` scan did (a read that selected no field, a field read, both), and
every filter the same events as the archive search's match on the reference; migration 0028
backfilled the dataset rows of the events already indexed, 0029 converts the rows to the new
shape and back; totals are exact up to the cap, then capped unless the exact count is asked
for."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select, update

from gateway.access_log import AccessEvent
from gateway.audit import ChainedAuditLog, query
from gateway.audit.field_index import CURSOR, field_access_rows, index_keys, index_match, index_pending
from gateway.audit.models import AuditEvent, AuditFieldAccess
from gateway.audit.query import Filters, count, search, stats
from gateway.db import alembic_config, upgrade
from tests.audit.chain_helpers import run_with_engine as on_db
from tests.audit.legacy_index import LEGACY_ACCESS, legacy_rows
from tests.conftest import BACKENDS, create_database

ACCESS, EVENTS = AuditFieldAccess.__table__, AuditEvent.__table__


def event(
    i: int, fields: list[dict[str, Any]], reads: list[dict[str, Any]], who: str = "client-a"
) -> AccessEvent:
    return AccessEvent(
        request_id=f"r{i}", tier="share", principal_kind="department", principal_id=who, consumer="hrss",
        client_address=None, operation_name=None, operation_type="query", query_digest=None, status=200,
        error_codes=[], latency_ms=1.0, fields=fields, reads=reads,
    )  # fmt: skip


def f(dataset: str, field: str, action: str = "allow") -> dict[str, Any]:
    return {"dataset": dataset, "field": field, "action": action}


EVENTS_MADE = [
    event(1, [], [{"dataset": "population", "rows": 3}]),  # only totalCount: no field selected
    event(2, [f("population", "name")], [{"dataset": "population", "rows": 1}]),  # a field read
    event(3, [f("population", "name", "mask"), f("legal_entity", "name")],  # both: a field of one
          [{"dataset": "population", "rows": 1}, {"dataset": "legal_entity", "rows": 1},
           {"dataset": "social_insurance", "rows": 0}]),  # and only the count of another
    event(4, [f("legal_entity", "code", "deny")], []),  # refused: named in fields only
    event(5, [], [{"subgraph": {"department": "hrss"}}]),  # no dataset at all
    event(6, [f("population", "id_number", "deny"), f("population", "id_number")],  # first decision kept
          [{"dataset": "population", "rows": 0}], who="client-b"),
]  # fmt: skip


def old_search(dataset: str) -> list[int]:
    """What the search found before the dataset rows: the events with a field row of the dataset,
    and those whose stored detail mentions it (`detail LIKE '%"dataset":"…"%'`)."""
    found = []
    for seq, e in enumerate(EVENTS_MADE, 1):
        detail = orjson.dumps({"fields": e.fields, "reads": e.reads}, option=orjson.OPT_SORT_KEYS).decode()
        fields = {a["dataset"] for a in field_access_rows(seq, e) if a["fields"]}
        if dataset in fields or f'"dataset":"{dataset}"' in detail:
            found.append(seq)
    return sorted(found, reverse=True)


async def record_all(engine: Any) -> None:
    sink = ChainedAuditLog(engine)
    for e in EVENTS_MADE:
        await sink.record(e)


def as_set(rows: Any) -> set[tuple[Any, ...]]:
    """(seq, dataset, ((field, action), ...)) of index rows"""
    return {(r["seq"], r["dataset"], tuple(zip(r["fields"], r["actions"], strict=True))) for r in rows}


def reference() -> set[tuple[Any, ...]]:
    return as_set(a for seq, e in enumerate(EVENTS_MADE, 1) for a in field_access_rows(seq, e))


async def stored(engine: Any) -> set[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return as_set((await conn.execute(select(ACCESS))).mappings())


def test_the_rows_derived_in_sql_match_the_reference(url: str) -> None:
    async def go(engine: Any) -> set[tuple[Any, ...]]:
        await record_all(engine)
        assert await index_pending(engine, chunk=4) == len(EVENTS_MADE)
        return await stored(engine)

    assert on_db(url, go) == reference()
    assert reference() == {
        (1, "population", ()),  # read, no field selected: a row with no entries
        (2, "population", (("name", "allow"),)),
        (3, "population", (("name", "mask"),)),
        (3, "legal_entity", (("name", "allow"),)),
        (3, "social_insurance", ()),
        (4, "legal_entity", (("code", "deny"),)),
        (6, "population", (("id_number", "deny"),)),  # the first decision listed
    }


def test_every_index_filter_finds_what_the_reference_matches(url: str) -> None:
    """The live search's SQL on the arrays and the archive search's `index_match` on the
    reference select the same events, for every combination of dataset, field and decision."""
    datasets = [None, "population", "legal_entity", "social_insurance", "nothing"]
    fields, decisions = [None, "name", "id_number", "code"], [None, "allow", "mask", "deny"]
    combos = [(d, fl, de) for d in datasets for fl in fields for de in decisions if d or fl or de]

    async def go(engine: Any) -> dict[Any, tuple[list[int], int]]:
        await record_all(engine)
        out = {}
        async with engine.connect() as conn:
            for d, fl, de in combos:
                page = await search(conn, Filters(dataset=d, field=fl, decision=de))
                out[d, fl, de] = ([e["seq"] for e in page["events"]], page["total"])
        return out

    got = on_db(url, go)
    for d, fl, de in combos:
        want = [seq for seq, e in reversed(list(enumerate(EVENTS_MADE, 1)))
                if index_match(index_keys(e.fields, e.reads), d, fl, de)]  # fmt: skip
        assert got[d, fl, de] == (want, len(want)), (d, fl, de)


def test_search_by_dataset_finds_what_the_detail_scan_found(url: str) -> None:
    async def go(engine: Any) -> dict[str, Any]:
        await record_all(engine)
        out: dict[str, Any] = {}
        async with engine.connect() as conn:
            for ds in ("population", "legal_entity", "social_insurance", "nothing"):
                page = await search(conn, Filters(dataset=ds))
                out[ds] = ([e["seq"] for e in page["events"]], page["total"], page["total_exact"])
            for key, flt in {
                "field": Filters(dataset="population", field="name"),
                "decision": Filters(dataset="population", decision="deny"),
                "decision alone": Filters(decision="allow"),
                "person and dataset": Filters(dataset="population", principal="client-b"),
            }.items():
                page = await search(conn, flt)
                out[key] = ([e["seq"] for e in page["events"]], page["total"])
            out["stats"] = (await stats(conn, Filters()))["datasets"]
        return out

    got = on_db(url, go)
    for ds in ("population", "legal_entity", "social_insurance", "nothing"):
        assert got[ds] == (old_search(ds), len(old_search(ds)), True), ds
    assert got["population"][0] == [6, 3, 2, 1]  # the totalCount-only read (1) among them
    assert got["field"] == ([3, 2], 2)
    assert got["decision"] == ([6], 1)
    assert got["decision alone"] == ([3, 2], 2)  # 6 lists its field refused first
    assert got["person and dataset"] == ([6], 1)
    # the per-dataset decisions count field rows only: no "" decision for the dataset rows
    assert got["stats"] == [
        {"dataset": "legal_entity", "events_by_decision": {"allow": 1, "deny": 1}},
        {"dataset": "population", "events_by_decision": {"allow": 1, "deny": 1, "mask": 1}},
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0028_backfills_the_dataset_rows(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Events indexed before 0028 have field rows only; the migration adds their dataset rows
    (an edited, unreadable event left out with a warning), events past the cursor are left to
    the gateway's indexer, and going down removes the dataset rows only."""
    from alembic import command

    url, drop = create_database(backend, tmp_path)

    async def indexed_the_old_way(engine: Any) -> None:
        await record_all(engine)
        old = [a for seq, e in enumerate(EVENTS_MADE, 1) for a in legacy_rows(seq, e) if a["field"]]
        async with engine.begin() as conn:
            await conn.execute(insert(LEGACY_ACCESS), [a for a in old if a["seq"] <= 5])
            await conn.execute(update(CURSOR).values(seq=5))  # event 6 not indexed yet
            await conn.execute(update(EVENTS).where(EVENTS.c.seq == 4).values(detail="not json {"))

    async def rows(engine: Any) -> set[tuple[Any, ...]]:
        async with engine.connect() as conn:
            return {
                tuple(r)
                for r in await conn.execute(
                    select(LEGACY_ACCESS.c.seq, LEGACY_ACCESS.c.dataset, LEGACY_ACCESS.c.field)
                )
            }

    async def population(engine: Any) -> list[int]:
        async with engine.connect() as conn:
            return [e["seq"] for e in (await search(conn, Filters(dataset="population")))["events"]]

    try:
        upgrade(url, "0027")
        on_db(url, indexed_the_old_way)
        before = on_db(url, rows)
        assert not any(fl == "" for _, _, fl in before)
        with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
            upgrade(url, "0028")
        added = on_db(url, rows) - before
        assert added == {(1, "population", ""), (2, "population", ""), (3, "population", ""),
                         (3, "legal_entity", ""), (3, "social_insurance", "")}  # fmt: skip
        assert any("5 / 5 events (100%" in m for m in caplog.messages)
        assert any("audit event 4: detail unreadable" in m for m in caplog.messages)
        command.downgrade(alembic_config(url), "0027")
        assert {r for r in on_db(url, rows) if r[2] == ""} == set()
        assert {r for r in on_db(url, rows)} >= before
        upgrade(url)  # through 0029
        assert on_db(url, population) == [6, 3, 2, 1]  # 6 indexed now, by the gateway's indexer
    finally:
        drop()


def test_totals_are_exact_up_to_the_cap(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap the total is the cap and says it is not exact; exact=True counts them all.
    Every way of counting: by person (principal or subject), by dataset on the index alone, by
    dataset and field, and by the events' own columns."""
    monkeypatch.setattr(query, "TOTAL_CAP", 3)

    async def go(engine: Any) -> dict[str, Any]:
        await record_all(engine)
        out: dict[str, Any] = {}
        async with engine.connect() as conn:
            for key, flt in {
                "person": Filters(principal="client-a"),
                "dataset": Filters(dataset="population"),
                "field": Filters(dataset="population", field="name"),
                "department": Filters(department="hrss"),
                "few": Filters(principal="client-b"),
            }.items():
                capped = await search(conn, flt, limit=2)
                exact = await search(conn, flt, limit=2, exact=True)
                counted = (await count(conn, flt), await count(conn, flt, exact=True))
                out[key] = (capped["total"], capped["total_exact"], exact["total"], exact["total_exact"],
                            len(capped["events"]), *counted)  # fmt: skip
        return out

    got = on_db(url, go)
    assert got["person"] == (3, False, 5, True, 2, (3, False), (5, True))
    assert got["dataset"] == (3, False, 4, True, 2, (3, False), (4, True))
    assert got["field"] == (2, True, 2, True, 2, (2, True), (2, True))
    assert got["department"] == (3, False, 6, True, 2, (3, False), (6, True))
    assert got["few"] == (1, True, 1, True, 1, (1, True), (1, True))


def test_a_person_is_counted_once_as_principal_and_subject(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Capped, a person's events are counted as principal, then as subject under another
    principal: an event naming them as both is counted once."""
    monkeypatch.setattr(query, "TOTAL_CAP", 4)
    made = [("officer-1", "officer-1"), ("client-x", "officer-1"), ("officer-1", None), ("client-y", None)]

    async def go(engine: Any) -> tuple[Any, ...]:
        sink = ChainedAuditLog(engine)
        for i, (who, subject) in enumerate(made, 1):
            e = event(i, [], [], who=who)
            e.subject = subject
            await sink.record(e)
        async with engine.connect() as conn:
            page = await search(conn, Filters(principal="officer-1"))
            return [e["seq"] for e in page["events"]], page["total"], page["total_exact"]

    assert on_db(url, go) == ([3, 2, 1], 3, True)


def test_the_count_stops_at_the_cap(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The capped count reads one match past the cap, not all of them (the SQL says LIMIT)."""
    monkeypatch.setattr(query, "TOTAL_CAP", 3)
    seen: list[str] = []

    async def go(engine: Any) -> None:
        from sqlalchemy import event as sa_event

        await record_all(engine)
        sa_event.listen(engine.sync_engine, "before_cursor_execute",
                        lambda conn, cur, stmt, params, ctx, many: seen.append(stmt))  # fmt: skip
        async with engine.connect() as conn:
            await count(conn, Filters(principal="client-a"))
            await count(conn, Filters(dataset="population"))

    on_db(url, go)
    counts = [s for s in seen if "count(" in s]
    assert len(counts) == 2 and all("LIMIT" in s for s in counts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0029_converts_the_rows_to_one_per_dataset_and_back(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rows indexed before 0029 become exactly the rows the indexer writes now (the entries'
    order aside), with a progress line per batch; searches find the same events after it;
    going down gives back the old rows. Event 7 holds what the writer does not write but the old
    index kept: a field entry naming no field (its decision was on the dataset row) and one
    naming no dataset."""
    from alembic import command

    odd = event(7, [{"dataset": "population", "field": "", "action": "deny"}, {"field": "orphan"}], [])
    made = [*EVENTS_MADE, odd]
    url, drop = create_database(backend, tmp_path)

    def normal(rows: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
        return {(seq, ds, tuple(sorted(entries))) for seq, ds, entries in rows}

    async def indexed_the_old_way(engine: Any) -> None:
        sink = ChainedAuditLog(engine)
        for e in made:
            await sink.record(e)
        async with engine.begin() as conn:
            await conn.execute(
                insert(LEGACY_ACCESS), [a for seq, e in enumerate(made, 1) for a in legacy_rows(seq, e)]
            )
            await conn.execute(update(CURSOR).values(seq=len(made)))

    async def old_rows(engine: Any) -> set[tuple[Any, ...]]:
        async with engine.connect() as conn:
            return {tuple(r) for r in await conn.execute(select(LEGACY_ACCESS))}

    async def searches(engine: Any) -> list[list[int]]:
        out = []
        async with engine.connect() as conn:
            for flt in (Filters(dataset="population"), Filters(field="name"), Filters(decision="deny"),
                        Filters(dataset="population", decision="deny"), Filters(field="orphan")):  # fmt: skip
                out.append([e["seq"] for e in (await search(conn, flt))["events"]])
        return out

    try:
        upgrade(url, "0028")
        on_db(url, indexed_the_old_way)
        before = on_db(url, old_rows)
        with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
            upgrade(url)
        assert any("7 / 7 seqs (100%" in m for m in caplog.messages)
        want = as_set(a for seq, e in enumerate(made, 1) for a in field_access_rows(seq, e))
        assert normal(on_db(url, stored)) == normal(want)
        assert (7, "population", (("", "deny"),)) in want and (7, "", (("orphan", ""),)) in want
        assert on_db(url, searches) == [[7, 6, 3, 2, 1], [3, 2], [7, 6, 4], [7, 6], [7]]
        command.downgrade(alembic_config(url), "0028")
        assert on_db(url, old_rows) == before
    finally:
        drop()
