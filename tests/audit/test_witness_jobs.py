"""The checkpoint writer and the alert evaluator with the writer's ChainWitness, on SQLite and
PostgreSQL: a segment this process appended whole is signed as appended (no re-read), anything
another writer appended is verified or read from the database as before."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from gateway.access_log import AccessEvent
from gateway.audit import ChainedAuditLog
from gateway.audit.alerts import AlertEngine, AlertRules, list_alerts
from gateway.audit.checkpoints import CheckpointError, verify_with_checkpoints, write_checkpoint
from gateway.audit.models import AuditEvent
from gateway.db import create_engine
from keys.keystore import KeyStore
from tests.audit.chain_helpers import reset_alerts, run_with_engine
from tests.audit.test_alerts import ALWAYS, ev
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__


@pytest.fixture
def chain(db: str) -> str:
    """The empty chain, no checkpoints, no alerts, the alert cursor at 0."""
    run_with_engine(db, reset_alerts)
    return db


async def record(sink: ChainedAuditLog, events: list[AccessEvent]) -> None:
    for e in events:
        await sink.record(e)


def test_checkpoint_signs_the_segment_as_this_process_appended_it(chain: str, store: KeyStore) -> None:
    async def go() -> None:
        engine = create_engine(chain)
        try:
            sink = ChainedAuditLog(engine)
            await record(sink, [make_event(i) for i in range(1, 7)])
            async with engine.begin() as conn:  # edited after the append, not re-hashed
                await conn.execute(update(EVENTS).where(EVENTS.c.seq == 3).values(principal_id="x"))
            with pytest.raises(CheckpointError, match="chain broken"):
                await write_checkpoint(engine, store)  # re-reading the table finds the edit
            cp = await write_checkpoint(engine, store, witness=sink.witness)
            assert cp is not None and (cp.seq, cp.hash) == sink.witness.head
            report = await verify_with_checkpoints(engine, store)
            assert not report.ok and report.first_bad_seq == 3

            await record(sink, [make_event(i) for i in (7, 8)])
            async with engine.begin() as conn:
                await conn.execute(update(EVENTS).where(EVENTS.c.seq == 8).values(hash="0" * 64))
            with pytest.raises(CheckpointError, match="not the event this gateway appended"):
                await write_checkpoint(engine, store, witness=sink.witness)
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_a_segment_another_writer_appended_is_verified_from_the_table(chain: str, store: KeyStore) -> None:
    async def go() -> None:
        engine = create_engine(chain)
        try:
            mine, theirs = ChainedAuditLog(engine), ChainedAuditLog(engine)
            await record(mine, [make_event(i) for i in (1, 2, 3)])
            await record(theirs, [make_event(i, "w1") for i in (4, 5, 6)])
            await record(mine, [make_event(i) for i in (7, 8)])
            assert mine.witness.head is not None and mine.witness.head[0] == 8
            async with engine.begin() as conn:
                await conn.execute(update(EVENTS).where(EVENTS.c.seq == 2).values(principal_id="x"))
            with pytest.raises(CheckpointError, match="chain broken"):
                await write_checkpoint(engine, store, witness=mine.witness)
            async with engine.begin() as conn:
                await conn.execute(update(EVENTS).where(EVENTS.c.seq == 2).values(principal_id="client-2"))
            cp = await write_checkpoint(engine, store, witness=mine.witness)
            assert cp is not None and cp.seq == 8
            assert (await verify_with_checkpoints(engine, store)).ok
            # mine idle while theirs appends: the chain's head is signed, not mine again
            await record(theirs, [make_event(i, "w1") for i in (9, 10)])
            cp = await write_checkpoint(engine, store, witness=mine.witness)
            assert cp is not None and cp.seq == 10
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_alerts_evaluate_appended_events_and_read_back_only_the_others(chain: str) -> None:
    """Events this process appended are evaluated as appended (a row count edited in the table
    afterwards changes nothing); those another writer appended are read from the table."""
    rules = AlertRules(bulk_rows=100, **ALWAYS)

    async def alerts(engine: object) -> list[tuple[str, str, int]]:
        async with engine.connect() as conn:  # type: ignore[attr-defined]
            return sorted(
                (a["rule"], a["principal_id"], a["seq"])
                for a in (await list_alerts(conn, state="all"))["alerts"]
            )

    async def go() -> None:
        engine = create_engine(chain)
        try:
            mine, theirs = ChainedAuditLog(engine), ChainedAuditLog(engine)
            await record(mine, [ev("a", rows=80)])
            await record(theirs, [ev("a", rows=30), ev("b", rows=100)])
            await record(mine, [ev("a", rows=80), ev("a", address="10.0.0.2")])
            async with engine.begin() as conn:  # the table now says a read nothing at 1 and 4
                await conn.execute(update(EVENTS).where(EVENTS.c.seq.in_([1, 4])).values(row_count=0))
            evaluator = AlertEngine(engine, rules, {}, batch=3, witness=mine.witness)
            assert await evaluator.run_until_caught_up() == 5
            # 1..3 come from the table (the witness's run restarted after theirs): a has 0 + 30;
            # 4 and 5 from the witness: 80 more rows cross 100 at 4, and 5 is a new address
            assert await alerts(engine) == [
                ("bulk_extraction", "a", 4),
                ("bulk_extraction", "b", 3),
                ("new_address", "a", 5),
            ]
        finally:
            await engine.dispose()

    asyncio.run(go())
