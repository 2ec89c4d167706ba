"""The field-access search index, filled beside the request path, on SQLite and PostgreSQL: the
append writes no index rows, the indexer fills them from the stored events (in chunks, once each,
also with two indexers at once), a search filtering on the index sees an event appended a moment
ago, an edited event whose detail the SQL cannot read does not stop the index, and migration
0010 starts the cursor at the head of a chain indexed the old way (the tests of migrations before
0029 write and read the index in its old shape: tests/audit/legacy_index.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from gateway.audit import ChainedAuditLog
from gateway.audit.field_index import CURSOR, index_pending
from gateway.audit.models import AuditEvent, AuditFieldAccess
from gateway.audit.query import Filters, search, stats
from gateway.db import create_engine, upgrade
from tests.audit import chain_helpers
from tests.audit.chain_helpers import run_with_engine as on_db
from tests.audit.legacy_index import LEGACY_ACCESS
from tests.audit.test_audit_chain import make_event
from tests.conftest import BACKENDS, create_database

ACCESS = AuditFieldAccess.__table__


async def index_rows(engine: Any) -> int:
    """The field entries of the index (one per (event, dataset, field))."""
    async with engine.connect() as conn:
        return sum(len(fields) for fields in (await conn.execute(select(ACCESS.c.fields))).scalars())


async def cursor(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(CURSOR.c.seq))).scalar_one())


def test_a_search_sees_the_event_appended_a_moment_ago(url: str) -> None:
    async def go() -> None:
        engine = create_engine(url)
        try:
            sink = ChainedAuditLog(engine)
            for i in range(1, 6):
                await sink.record(make_event(i))
            assert await index_rows(engine) == 0 and await cursor(engine) == 0  # not in the append
            async with engine.connect() as conn:
                page = await search(conn, Filters(dataset="ds1", field="名称"))
            assert [e["seq"] for e in page["events"]] == [5, 4, 3, 2, 1] and page["total"] == 5
            assert await cursor(engine) == 5 and await index_rows(engine) == 5
            await sink.record(make_event(6))
            async with engine.connect() as conn:
                figures = await stats(conn, Filters())
            assert figures["datasets"] == [{"dataset": "ds1", "events_by_decision": {"clear": 6}}]
            assert await index_pending(engine) == 0  # nothing left, nothing indexed twice
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_two_indexers_at_once_index_each_event_once(url: str) -> None:
    async def go() -> None:
        engine, other = create_engine(url), create_engine(url)
        try:
            sink = ChainedAuditLog(engine)
            await asyncio.gather(*(sink.record(make_event(i)) for i in range(1, 41)))
            done = await asyncio.gather(index_pending(engine, chunk=7), index_pending(other, chunk=5))
            assert sum(done) == 40
            assert await cursor(engine) == 40 and await index_rows(engine) == 40
        finally:
            await engine.dispose()
            await other.dispose()

    asyncio.run(go())


def test_an_unreadable_detail_is_left_out_and_the_index_goes_on(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only an edited row can hold such a detail (verify reports it); the index must not stop
    there, or every later search on a dataset or field would fail."""
    events = AuditEvent.__table__

    async def go() -> None:
        engine = create_engine(url)
        try:
            sink = ChainedAuditLog(engine)
            for i in range(1, 9):
                await sink.record(make_event(i))
            async with engine.begin() as conn:
                await conn.execute(update(events).where(events.c.seq == 3).values(detail="not json {"))
                await conn.execute(
                    update(events).where(events.c.seq == 6).values(detail='{"fields": {"dataset": "ds1"}}')
                )
            with caplog.at_level(logging.WARNING, logger="shuqiao.audit"):
                assert await index_pending(engine, chunk=5) == 8
            assert await cursor(engine) == 8
            async with engine.connect() as conn:
                indexed = sorted((await conn.execute(select(ACCESS.c.seq).distinct())).scalars())
                page = await search(conn, Filters(dataset="ds1", field="名称"))
            assert indexed == [1, 2, 4, 5, 7, 8]
            assert [e["seq"] for e in page["events"]] == [8, 7, 5, 4, 2, 1]
            warned = [m for m in caplog.messages if "left out of the search index" in m]
            assert len(warned) == 2 and "[3]" in warned[0] and "[6]" in warned[1]
            assert not any("not json" in m for m in caplog.messages)  # no stored content
            await sink.record(make_event(9))
            assert await index_pending(engine) == 1 and await index_rows(engine) == 7
        finally:
            await engine.dispose()

    asyncio.run(go())


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0010_starts_the_cursor_at_the_indexed_head(backend: str, tmp_path: Path) -> None:
    url, drop = create_database(backend, tmp_path)
    try:
        upgrade(url, "0009")
        # the old writer indexed in the append's transaction, as chain_helpers does
        events = [make_event(i) for i in range(1, 4)]
        on_db(url, lambda engine: chain_helpers.append(engine, events, legacy_index=True))
        upgrade(url)

        async def check(engine: Any) -> None:
            assert await cursor(engine) == 3 and await index_rows(engine) == 3
            assert await index_pending(engine) == 0

        on_db(url, check)
    finally:
        drop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_downgrading_0010_indexes_what_the_cursor_had_not_reached(backend: str, tmp_path: Path) -> None:
    """Revision 0009 indexes in the append: events left behind the cursor would never be."""
    from alembic import command

    from gateway.db import alembic_config

    url, drop = create_database(backend, tmp_path)
    try:
        upgrade(url)

        async def appended(engine: Any) -> None:
            sink = ChainedAuditLog(engine)
            for i in range(1, 4):
                await sink.record(make_event(i))
            await index_pending(engine)  # 1..3 indexed by the cursor
            for i in range(4, 7):
                await sink.record(make_event(i))

        on_db(url, appended)
        command.downgrade(alembic_config(url), "0009")

        async def check(engine: Any) -> None:
            async with engine.connect() as conn:
                assert sorted((await conn.execute(select(LEGACY_ACCESS.c.seq))).scalars()) == [
                    1,
                    2,
                    3,
                    4,
                    5,
                    6,
                ]

        on_db(url, check)
    finally:
        drop()


def test_rows_that_already_exist_do_not_stop_the_index(url: str) -> None:
    """PostgreSQL's set-based insert has no ON CONFLICT (it cost 30% of its time): a chunk that
    meets an existing row is redone event by event, ignoring it."""

    async def go() -> None:
        engine = create_engine(url)
        try:
            sink = ChainedAuditLog(engine)
            for i in range(1, 5):
                await sink.record(make_event(i))
            async with engine.begin() as conn:  # as a moved-back cursor would leave it
                await conn.execute(
                    ACCESS.insert().values(seq=2, dataset="ds1", fields=["名称"], actions=["clear"])
                )
            assert await index_pending(engine) == 4
            assert await cursor(engine) == 4 and await index_rows(engine) == 4
        finally:
            await engine.dispose()

    asyncio.run(go())


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0011_rekeys_the_index_and_keeps_its_rows(backend: str, tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from gateway.db import alembic_config

    async def appended(engine: Any) -> None:  # indexed as revision 0010 did
        await chain_helpers.append(engine, [make_event(i) for i in range(1, 6)], legacy_index=True)
        async with engine.begin() as conn:
            await conn.execute(update(CURSOR).values(seq=5))

    async def shape(engine: Any) -> tuple[list[Any], list[str], list[str]]:
        """(rows, primary key columns, index names) of audit_field_access"""

        def schema(c: Any) -> tuple[list[str], list[str]]:
            found = inspect(c)
            return (
                found.get_pk_constraint("audit_field_access")["constrained_columns"],
                sorted(i["name"] for i in found.get_indexes("audit_field_access")),
            )

        async with engine.connect() as conn:
            rows = sorted(
                (await conn.execute(select(LEGACY_ACCESS).where(LEGACY_ACCESS.c.field != ""))).all()
            )
            return (rows, *await conn.run_sync(schema))

    async def physical(engine: Any) -> str:
        """what makes the new shape cheap on this database"""
        ddl = (
            "SELECT sql FROM sqlite_master WHERE name = 'audit_field_access'"
            if backend == "sqlite"
            else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_audit_field_access_seq'"
        )
        async with engine.connect() as conn:
            found = str((await conn.execute(text(ddl))).scalar_one())
        return next(mark for mark in ("WITHOUT ROWID", "USING brin") if mark in found)

    url, drop = create_database(backend, tmp_path)
    try:
        upgrade(url, "0010")
        on_db(url, appended)
        before = on_db(url, shape)
        upgrade(url, "0011")
        after = on_db(url, shape)
        assert on_db(url, physical) == ("WITHOUT ROWID" if backend == "sqlite" else "USING brin")
        command.downgrade(alembic_config(url), "0010")
        back = on_db(url, shape)
        assert len(before[0]) == 5 and after[0] == before[0] == back[0]
        old_shape = (["seq", "dataset", "field"], ["ix_audit_field_access_dataset_field"])
        assert before[1:] == old_shape == back[1:]
        assert after[1:] == (["dataset", "field", "seq"], ["ix_audit_field_access_seq"])
    finally:
        drop()
