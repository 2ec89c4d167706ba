"""The walk's fast canonical bytes (gateway.audit.verify_ranges: latency_ms hashed as stored, without
round(), when PostgreSQL vouches that it is its own round(x, 3); NULL extension columns dropped by
position) are `canonical_bytes` of the row whenever the fast hash is not NULL, whatever the text,
NULLs, numbers and times stored; else a second look by the writer's own function decides. A value
the writer stores (latency rounded to 3 decimals, a time of this era, any text) needs no second
look."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from gateway.audit import verify_chain, verify_ranges
from gateway.audit.chain import canonical_bytes, link
from gateway.audit.models import HEAD_ID
from gateway.audit.verify import VerifyReport

CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f"
TEXTS = [
    "",
    "plain",
    'quote " and backslash \\ and slash / and \\"escaped\\"',
    CONTROL,
    "名称 數據 🙂 \u2028 \u2029 \ufeff é",
    '{"fields": [{"dataset": "ds1", "field": "名称"}], "reads": []}',
    "</script>\\u0000 \\n",
]
# (latency stored, True: no second look, False: a second look, None: either)
LATENCIES: list[tuple[float, bool | None]] = [
    (0.1, True),
    (12.337, True),
    (123456.789, True),
    (0.001, True),
    (2.675, True),  # stored as 2.67499999999999982236431605997495353221893310546875
    (3.0, True),
    (0.0, True),
    (-0.0, True),
    (-2.5, True),
    (999999.999, True),
    (123456789012345.0, None),
    (4398046511103.999, None),
    (1e-05, False),
    (0.0005, False),
    (2.6745, False),
    (1.23456, False),
    (1e15, False),
    (1e16, False),
    (1.5e300, False),
    (float("nan"), False),
    (float("inf"), False),
    (float("-inf"), False),
]
T0 = datetime(2026, 12, 3, 4, 5, 6, 789, tzinfo=UTC)
TIMES = [
    T0,
    T0.replace(microsecond=0),
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC),
    # asyncpg stores datetime's first and last microseconds as -infinity and infinity (and reads
    # them back so): PostgreSQL writes no time for them, the second look decides
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
]
EXTENSIONS = ("subject", "row_count", "variables_enc", "signature_kid")


def rows() -> list[dict[str, Any]]:
    """Rows covering the edge cases: each text in each text column, each latency, each time, every
    combination of NULL extension columns, NULL nullable columns, large ints."""
    out: list[dict[str, Any]] = []

    def row(**values: Any) -> None:
        base: dict[str, Any] = {
            "occurred_at": T0,
            "request_id": "r",
            "tier": "share",
            "principal_kind": "client",
            "principal_id": "client-1",
            "consumer": "D001",
            "client_address": "10.0.0.7",
            "operation_name": "Op",
            "operation_type": "query",
            "query_digest": "ab" * 32,
            "status": 200,
            "error_codes": "[]",
            "latency_ms": 12.5,
            "detail": "{}",
            "subject": "person-1",
            "row_count": 3,
            "variables_enc": "sealed",
            "signature_kid": "kid-1",
        }
        out.append({**base, **values})

    for column in (
        "request_id",
        "principal_id",
        "consumer",
        "detail",
        "error_codes",
        "subject",
        "variables_enc",
    ):
        for text in TEXTS:
            row(**{column: text})
    for latency, _ in LATENCIES:
        row(latency_ms=latency)
    for t in TIMES:
        row(occurred_at=t)
    for nulls in itertools.product((False, True), repeat=len(EXTENSIONS)):
        row(**{name: None for name, null in zip(EXTENSIONS, nulls, strict=True) if null})
    row(consumer=None, client_address=None, operation_name=None, operation_type=None, query_digest=None)
    row(status=-1, row_count=2**31 - 1)
    row(status=2**31 - 1, row_count=-(2**31))
    return out


async def fill(dsn: str, events: list[dict[str, Any]]) -> None:
    """The events chained by the writer's own function, the head at the last."""
    _, head = link(events, 0, "0" * 64)
    columns = [*events[0].keys()]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "audit_event", records=[tuple(e[c] for c in columns) for e in events], columns=columns
        )
        await conn.execute(
            "INSERT INTO audit_chain_head (id, seq, hash) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            HEAD_ID,
            events[-1]["seq"],
            head,
        )
    finally:
        await conn.close()


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def pg(url: str) -> str:
    if not url.startswith("postgresql"):
        pytest.skip("the fast path is PostgreSQL's")
    return url


def fast_bytes(row: Any) -> bytes:
    """What the walk hashes for a row of RANGE_PAGE (its loop, written out)."""
    doc = dict(zip(verify_ranges.FAST_KEYS, row, strict=False))
    for name in verify_ranges.EXTENSION_COLUMNS:
        if doc[name] is None:
            del doc[name]
    return orjson.dumps(doc)


def expected_look(event: dict[str, Any]) -> bool | None:
    """Whether this row gets a second look (None: either)."""
    if event["occurred_at"] in (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)):
        return True
    latency = event["latency_ms"]
    found = [exact for value, exact in LATENCIES if repr(value) == repr(latency)]
    exact = found[0] if found else True  # 12.5, the other rows' latency
    return None if exact is None else not exact


def test_the_fast_bytes_are_the_writers_wherever_the_fast_hash_is_given(pg: str) -> None:
    events = rows()

    async def go() -> list[Any]:
        await fill(dsn(pg), events)
        conn = await asyncpg.connect(dsn(pg))
        try:
            return await conn.fetch(verify_ranges.RANGE_PAGE, 0, 2**62, 10_000)
        finally:
            await conn.close()

    fetched = asyncio.run(go())
    assert len(fetched) == len(events)
    for row, event in zip(fetched, events, strict=True):
        fast_hash = row[len(verify_ranges.FAST_KEYS)]
        look = expected_look(event)
        if look is not None:
            assert (fast_hash is None) == look, event
        if fast_hash is not None:
            assert fast_hash == event["hash"]
            assert fast_bytes(row) == canonical_bytes(event), event


def test_times_python_cannot_hold_fall_back(pg: str) -> None:
    async def go() -> list[Any]:
        await fill(dsn(pg), rows()[:1])
        conn = await asyncpg.connect(dsn(pg))
        try:
            async with conn.transaction():
                out = []
                for t in ("10000-01-01 00:00:00+00", "infinity", "-infinity", "0001-01-01 00:00:00+00 BC"):
                    await conn.execute("UPDATE audit_event SET occurred_at = $1::text::timestamptz", t)
                    row = await conn.fetchrow(verify_ranges.RANGE_PAGE, 0, 2**62, 10)
                    out.append(row[len(verify_ranges.FAST_KEYS)])
                raise asyncio.CancelledError  # roll back
        except asyncio.CancelledError:
            return out
        finally:
            await conn.close()

    assert asyncio.run(go()) == [None] * 4


def test_a_chain_of_edge_cases_verifies_and_an_edit_is_caught(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain of all those rows verifies, with a second look only for the rows PostgreSQL does
    not vouch for; an edit of a text column by one character, of a latency beyond its rounding, or of a
    row that falls back, is reported at its seq with the same reason in any split."""
    events = rows()
    looks: list[int] = []
    real = verify_ranges._second_look

    async def counted(raw: Any, seq: int) -> str | None:
        looks.append(seq)
        return await real(raw, seq)

    monkeypatch.setattr(verify_ranges, "_second_look", counted)
    fallback_seq = next(i + 1 for i, e in enumerate(events) if repr(e["latency_ms"]) == "1e-05")
    edits = [
        ("UPDATE audit_event SET detail = detail || ' ' WHERE seq = $1", 30),
        ("UPDATE audit_event SET latency_ms = latency_ms + 0.001 WHERE seq = $1", 20),
        ("UPDATE audit_event SET latency_ms = 1e-04 WHERE seq = $1", 10),  # rounds to 0.0: not 12.5
        ("UPDATE audit_event SET request_id = request_id || 'x' WHERE seq = $1", fallback_seq),
        ("UPDATE audit_event SET subject = NULL WHERE seq = $1", 40),
    ]

    async def go() -> tuple[VerifyReport, list[tuple[int, VerifyReport]]]:
        from gateway.db import create_engine

        await fill(dsn(pg), events)
        engine = create_engine(pg)
        conn = await asyncpg.connect(dsn(pg))
        try:
            intact = await verify_chain(engine)
            must = {i + 1 for i, e in enumerate(events) if expected_look(e)}
            may = {i + 1 for i, e in enumerate(events) if expected_look(e) is None}
            assert must <= set(looks) <= must | may, sorted(looks)
            edited = []
            for sql, seq in edits:
                saved = await conn.fetchrow("SELECT * FROM audit_event WHERE seq = $1", seq)
                await conn.execute(sql, seq)
                report = await verify_chain(engine)
                for k in (2, 3):
                    assert await verify_chain(engine, workers=k, min_range=1) == report, k
                edited.append((seq, report))
                await conn.execute("DELETE FROM audit_event WHERE seq = $1", seq)
                await conn.copy_records_to_table(
                    "audit_event", records=[tuple(saved)], columns=list(saved.keys())
                )
            return intact, edited
        finally:
            await conn.close()
            await engine.dispose()

    intact, edited = asyncio.run(go())
    assert intact == VerifyReport(ok=True, events_checked=len(events))
    for seq, report in edited:
        assert report == VerifyReport(False, seq - 1, seq, f"seq {seq}: content does not match its hash"), (
            report
        )
