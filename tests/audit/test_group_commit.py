"""Group commit: many concurrent record() calls share transactions, each returns only once its
event is committed, every event is there exactly once and the chain verifies. Plus the event
fields added in migration 0004: sealed variables, row counts, the per-field search index."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gateway.access_log import AccessEvent
from gateway.audit import ChainedAuditLog, VariableCipher, verify_chain
from gateway.audit.field_index import index_pending
from gateway.audit.models import AuditEvent, AuditFieldAccess
from gateway.db import create_engine
from keys.errors import DecryptionError
from tests.audit.test_audit_chain import make_event

EVENTS = AuditEvent.__table__
ACCESS = AuditFieldAccess.__table__
CIPHER = VariableCipher(bytes(range(16)))


def test_concurrent_records_are_grouped_and_all_committed(url: str) -> None:
    n = 300

    async def go() -> tuple[int, int, int, Any, set[str]]:
        engine = create_engine(url)
        try:
            log = ChainedAuditLog(engine)
            committed: list[str] = []

            async def one(i: int) -> None:
                await log.record(make_event(i, "c"))
                # When record() returns, the event must already be visible to another connection.
                async with engine.connect() as conn:
                    found = (
                        await conn.execute(
                            select(func.count()).select_from(EVENTS).where(EVENTS.c.request_id == f"c-{i}")
                        )
                    ).scalar_one()
                assert found == 1
                committed.append(f"c-{i}")

            await asyncio.gather(*(one(i) for i in range(n)))
            async with engine.connect() as conn:
                count = (await conn.execute(select(func.count()).select_from(EVENTS))).scalar_one()
                ids = set((await conn.execute(select(EVENTS.c.request_id))).scalars())
            return count, log.batches, len(committed), await verify_chain(engine), ids
        finally:
            await engine.dispose()

    count, batches, committed, report, ids = asyncio.run(go())
    assert (count, committed) == (n, n)
    assert ids == {f"c-{i}" for i in range(n)}
    assert report.ok and report.events_checked == n, report
    assert batches < n / 4, f"{batches} transactions for {n} concurrent events: not grouped"


def test_a_failed_batch_fails_every_caller_in_it(url: str) -> None:
    async def go() -> list[Any]:
        engine = create_engine(url)
        try:
            log = ChainedAuditLog(engine)
            await log.record(make_event(0))

            async def broken(*_: Any) -> None:
                raise RuntimeError("disk full")

            log._append = broken  # type: ignore[method-assign]
            results = await asyncio.gather(
                *(log.record(make_event(i)) for i in range(1, 20)), return_exceptions=True
            )
            return results
        finally:
            await engine.dispose()

    results = asyncio.run(go())
    assert all(isinstance(r, RuntimeError) for r in results), results


def _event_with_variables() -> AccessEvent:
    event = make_event(3)
    event.variables = {"id": "610113199001011234"}
    event.subject = "officer-7"
    event.signature_kid = "0123456789abcdef"
    event.fields = [
        {"dataset": "population", "field": "id_number", "action": "deny", "reason": "no grant"},
        {"dataset": "population", "field": "name", "action": "allow", "reason": ""},
    ]
    event.reads = [
        {"dataset": "population", "rows": 7, "grant_id": 3, "purpose": "社保"},
        {"dataset": "social_insurance", "rows": 5, "grant_id": None, "purpose": None},
    ]
    return event


def test_variables_are_sealed_and_fields_indexed(url: str) -> None:
    async def go() -> tuple[dict[str, Any], list[Any]]:
        engine = create_engine(url)
        try:
            await ChainedAuditLog(engine, CIPHER).record(_event_with_variables())
            await index_pending(engine)
            async with engine.connect() as conn:
                row = dict((await conn.execute(select(EVENTS))).mappings().one())
                access = (
                    await conn.execute(
                        select(ACCESS.c.dataset, ACCESS.c.fields, ACCESS.c.actions).order_by(ACCESS.c.dataset)
                    )
                ).all()
            return row, access
        finally:
            await engine.dispose()

    row, access = asyncio.run(go())
    assert "610113199001011234" not in str(row)
    assert row["variables_enc"].startswith("sm4gcm.v1.")
    assert CIPHER.open(row["request_id"], row["variables_enc"]) == {"id": "610113199001011234"}
    with pytest.raises(DecryptionError):  # bound to its event: moved to another one it fails
        CIPHER.open("another-request", row["variables_enc"])
    assert (row["row_count"], row["subject"], row["signature_kid"]) == (12, "officer-7", "0123456789abcdef")
    assert [tuple(a) for a in access] == [
        # a row for each dataset it touched, in fields or reads, with its fields' decisions
        ("population", ["id_number", "name"], ["deny", "allow"]),
        ("social_insurance", [], []),
    ]


def test_variables_are_dropped_without_a_cipher(url: str) -> None:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            await ChainedAuditLog(engine).record(_event_with_variables())
            async with engine.connect() as conn:
                return (await conn.execute(select(EVENTS.c.variables_enc))).scalar_one()
        finally:
            await engine.dispose()

    assert asyncio.run(go()) is None


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("subject", "someone-else"),
        ("row_count", 13),
        ("row_count", None),
        ("variables_enc", None),
        ("signature_kid", "fedcba9876543210"),
    ],
)
def test_the_extension_columns_are_covered_by_the_hash(url: str, column: str, value: Any) -> None:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            log = ChainedAuditLog(engine, CIPHER)
            for _ in range(3):
                await log.record(_event_with_variables())
            async with engine.begin() as conn:
                await conn.execute(update(EVENTS).where(EVENTS.c.seq == 2).values({column: value}))
            return await verify_chain(engine)
        finally:
            await engine.dispose()

    report = asyncio.run(go())
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_the_index_derived_in_sql_matches_the_reference(url: str) -> None:
    """The indexer derives audit_field_access from the stored detail inside the database; the rows
    must be exactly `field_access_rows`: one per (event, dataset), each field's first decision, the
    legacy
    "decision" key read too, fields across several events and datasets kept apart. The append
    itself writes none: the request does not wait for them."""
    from gateway.audit.field_index import field_access_rows

    def event(i: int, fields: list[dict[str, Any]]) -> AccessEvent:
        return AccessEvent(
            request_id=f"r{i}",
            tier="share",
            principal_kind="department",
            principal_id="p",
            consumer="hrss",
            client_address=None,
            operation_name=None,
            operation_type="query",
            query_digest=None,
            status=200,
            error_codes=[],
            latency_ms=1.0,
            fields=fields,
        )

    events = [
        event(
            0,
            [
                {"dataset": "population", "field": "name", "action": "mask"},
                {"dataset": "population", "field": "name", "action": "allow"},  # an alias: first wins
                {"dataset": "legal_entity", "field": "name", "action": "allow"},
                {"dataset": "population", "field": "id_number", "decision": "deny"},
            ],
        ),
        event(1, []),
        event(2, [{"dataset": "population", "field": "name", "action": "deny", "reason": "无条件共享"}]),
    ]

    async def go() -> set[tuple[Any, ...]]:
        engine = create_engine(url)
        try:
            log = ChainedAuditLog(engine)
            await asyncio.gather(*(log.record(e) for e in events))  # one batch
            assert log.batches == 1
            async with engine.connect() as conn:
                assert (await conn.execute(select(func.count()).select_from(ACCESS))).scalar() == 0
            assert await index_pending(engine, chunk=2) == 3  # in two chunks
            assert await index_pending(engine) == 0
            async with engine.connect() as conn:
                return {
                    (r.seq, r.dataset, tuple(r.fields), tuple(r.actions))
                    for r in await conn.execute(select(ACCESS))
                }
        finally:
            await engine.dispose()

    expected = {
        (a["seq"], a["dataset"], tuple(a["fields"]), tuple(a["actions"]))
        for seq, e in enumerate(events, 1)
        for a in field_access_rows(seq, e)
    }
    assert asyncio.run(go()) == expected  # the fields in the order listed, each with its first decision
    assert (1, "population", ("name", "id_number"), ("mask", "deny")) in expected


def test_every_batch_size_stores_the_rows_it_hashed(url: str) -> None:
    """PostgreSQL passes small batches as typed parameters and larger ones as one JSON parameter
    (store.PG_TYPED_ROWS): batches on both sides of that line, with NULL and set optional
    columns, store exactly the values that were hashed, and the chain verifies."""
    from gateway.audit.chain import HASHED_COLUMNS, canonical_bytes
    from gateway.audit.store import PG_TYPED_ROWS

    sizes = [1, 2, PG_TYPED_ROWS, PG_TYPED_ROWS + 1, 3 * PG_TYPED_ROWS]

    async def go() -> tuple[Any, list[dict[str, Any]], list[bytes]]:
        engine = create_engine(url)
        try:
            log = ChainedAuditLog(engine, CIPHER)
            hashed: list[bytes] = []
            log.witness.appended = lambda rows: hashed.extend(canonical_bytes(r) for r in rows)  # type: ignore[method-assign]
            i = 0
            for size in sizes:
                events = []
                for _ in range(size):
                    e = make_event(i, f"b{size}")
                    if i % 2:
                        e.subject, e.signature_kid, e.variables = "person-1", "kid-1", {"id": f"{i}"}
                    events.append(e)
                    i += 1
                before = log.batches
                await asyncio.gather(*(log.record(e) for e in events))
                assert log.batches == before + 1, f"a batch of {size} was not one transaction"
            async with engine.connect() as conn:
                stored = await conn.execute(select(EVENTS).order_by(EVENTS.c.seq))
                rows = [dict(r) for r in stored.mappings()]
            return await verify_chain(engine), rows, hashed
        finally:
            await engine.dispose()

    report, rows, hashed = asyncio.run(go())
    assert report.ok and report.events_checked == sum(sizes), report
    assert [canonical_bytes(r) for r in rows] == hashed  # stored values re-hash to what was hashed
    assert [r["hash"] for r in rows][-1] and set(HASHED_COLUMNS) <= set(rows[0])
    assert rows[1]["subject"] == "person-1" and rows[0]["subject"] is None and rows[1]["variables_enc"]
