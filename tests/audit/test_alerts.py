"""Alert rules over the audit chain on SQLite and PostgreSQL — bulk extraction, FORBIDDEN_FIELD
probing, L4 access out of hours, a client from a new address — and the officer API that lists and
acknowledges alerts (the acknowledgement is itself an audit event)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from gateway.access_log import AccessEvent
from gateway.audit.alerts import (
    AlertEngine,
    AlertRules,
    list_alerts,
)
from gateway.db import create_engine
from tests.audit.chain_helpers import append, reset_alerts, run_with_engine

ALWAYS = dict(work_start=time(0, 0), work_end=time.max, work_days=frozenset(range(1, 8)))
NEVER = dict(work_days=frozenset())


@pytest.fixture
def db(url: str) -> str:
    run_with_engine(url, reset_alerts)
    return url


def ev(
    principal: str = "client-a",
    *,
    rows: int = 0,
    denied: int = 0,
    allowed: tuple[str, ...] = (),
    address: str = "10.0.0.1",
    kind: str = "department",
) -> AccessEvent:
    tag = uuid.uuid4().hex[:6]
    fields = [{"dataset": "population", "field": f"f{tag}{i}", "action": "deny"} for i in range(denied)]
    fields += [{"dataset": "population", "field": f, "action": "allow"} for f in allowed]
    return AccessEvent(
        request_id=tag,
        tier="share",
        principal_kind=kind,
        principal_id=principal,
        consumer="samr",
        client_address=address,
        operation_name="Q",
        operation_type="query",
        query_digest=None,
        status=200,
        error_codes=["FORBIDDEN_FIELD"] if denied else [],
        latency_ms=1.0,
        fields=fields,
        reads=[{"dataset": "population", "rows": rows}] if rows else [],
    )


def run(
    url: str,
    events: list[AccessEvent],
    rules: AlertRules | None = None,
    levels: dict[tuple[str, str], int] | None = None,
) -> list[dict[str, Any]]:
    """Append the events, evaluate, and return every alert (oldest first)."""

    async def go() -> list[dict[str, Any]]:
        engine = create_engine(url)
        try:
            for e in events:
                await append(engine, [e])
            alerting = AlertEngine(engine, rules or AlertRules(**ALWAYS), levels or {}, batch=3)
            await alerting.run_until_caught_up()
            assert await alerting.run_once() == 0  # the cursor moved: nothing is evaluated twice
            async with engine.connect() as conn:
                return list(reversed((await list_alerts(conn, state="all"))["alerts"]))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_bulk_extraction_alerts_once_when_a_principal_crosses_the_threshold(db: str) -> None:
    rules = AlertRules(bulk_rows=100, bulk_window=timedelta(hours=1), **ALWAYS)
    alerts = run(
        db,
        [
            ev("a", rows=40),
            ev("b", rows=90),
            ev("a", rows=40),
            ev("a", rows=30),
            ev("a", rows=10),
            ev("b", rows=5),
        ],
        rules,
    )
    assert [(a["rule"], a["principal_id"], a["seq"]) for a in alerts] == [("bulk_extraction", "a", 4)]
    assert alerts[0]["detail"]["rows"] == 110 and alerts[0]["acknowledged_at"] is None


def test_repeated_forbidden_field_probing(db: str) -> None:
    rules = AlertRules(probe_denials=5, probe_window=timedelta(minutes=10), **ALWAYS)
    alerts = run(
        db,
        [
            ev("p", denied=2),
            ev("q", denied=4),
            ev("p", denied=2),
            ev("p", rows=3),
            ev("p", denied=2),
            ev("p", denied=1),
        ],
        rules,
    )
    assert [(a["rule"], a["principal_id"], a["seq"]) for a in alerts] == [("forbidden_probing", "p", 5)]
    assert alerts[0]["detail"]["denials"] == 6


def test_l4_access_outside_working_hours(db: str) -> None:
    levels = {("population", "id_number"): 4, ("population", "phone"): 3}
    events = [ev(allowed=("id_number", "name")), ev(allowed=("phone",)), ev(denied=1)]
    assert run(db, events, AlertRules(**ALWAYS), levels) == []
    alerts = run(db, events, AlertRules(**NEVER), levels)
    assert [(a["rule"], a["seq"], a["detail"]["fields"]) for a in alerts] == [
        ("l4_out_of_hours", 4, ["population.id_number"])
    ]


def test_working_hours_are_beijing_time() -> None:
    rules = AlertRules.parse(
        bulk_rows=1,
        bulk_window_seconds=1,
        probe_denials=1,
        probe_window_seconds=1,
        working_hours="08:30-18:00",
        working_days="1-5",
    )
    # Monday 2026-11-23 09:00 in Beijing is 01:00 UTC; 18:30 Beijing is 10:30 UTC
    assert rules.working(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    assert not rules.working(datetime(2026, 11, 23, 0, 29, tzinfo=UTC))  # 08:29 Beijing
    assert not rules.working(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    assert not rules.working(datetime(2026, 11, 22, 2, 0, tzinfo=UTC))  # Sunday 10:00 Beijing


def test_first_use_of_a_client_from_a_new_address(db: str) -> None:
    alerts = run(
        db,
        [
            ev("c", address="10.0.0.1"),
            ev("c", address="10.0.0.1"),
            ev("c", address="10.9.9.9"),
            ev("c", address="10.9.9.9"),
            ev("d", address="10.9.9.9"),
            ev("anonymous", kind="anonymous", address="1.2.3.4"),
            ev("anonymous", kind="anonymous", address="5.6.7.8"),
        ],
    )
    assert [(a["rule"], a["principal_id"], a["seq"], a["detail"]["address"]) for a in alerts] == [
        ("new_address", "c", 3, "10.9.9.9")
    ]


# -- the officer API (the demo gateway, SQLite and PostgreSQL) ---------------------------------

POPULATION = "query P($first: Int) { population(first: $first) { edges { node { idNumber name } } } }"


def test_officer_lists_and_acknowledges_alerts_and_the_ack_is_audited(
    client: Any, tokens: dict[str, str], demo_env: Any
) -> None:
    from tests.audit.chain_helpers import out_of_hours_evaluation
    from tests.audit.test_officer_api import api
    from tests.conftest import gql

    token = _officer_token(client, demo_env)
    with out_of_hours_evaluation(client, demo_env.settings.database_url):
        r = gql(client, "share", POPULATION, token=tokens["hrss"], variables={"first": 2})
        assert r.status_code == 200, r.text
    assert client.get("/audit/api/alerts").status_code == 401
    listed = api(client, "alerts", token, rule="l4_out_of_hours").json()["alerts"]
    mine = [a for a in listed if a["consumer"] == "hrss" and "population.id_number" in a["detail"]["fields"]]
    assert mine, listed
    alert_id = mine[0]["id"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (
        client.post(f"/audit/api/alerts/{alert_id}/ack", json={"comment": " "}, headers=headers).status_code
        == 400
    )
    r = client.post(
        f"/audit/api/alerts/{alert_id}/ack",
        json={"comment": "核实：社保待遇资格认证夜间批处理"},
        headers=headers,
        params={},
    )
    assert r.status_code == 200, r.text
    assert r.json()["ack_comment"] == "核实：社保待遇资格认证夜间批处理" and r.json()["acknowledged_by"]
    assert (
        client.post(
            f"/audit/api/alerts/{alert_id}/ack", json={"comment": "again"}, headers=headers
        ).status_code
        == 409
    )
    assert (
        client.post("/audit/api/alerts/999999999/ack", json={"comment": "x"}, headers=headers).status_code
        == 404
    )
    assert alert_id not in [a["id"] for a in api(client, "alerts", token).json()["alerts"]]
    assert alert_id in [a["id"] for a in api(client, "alerts", token, state="acknowledged").json()["alerts"]]
    # the acknowledgement is an audit event, its comment sealed in the variables
    acks = api(client, "events", token, tier="audit", limit=20).json()["events"]
    ack = next(e for e in acks if e["operation_name"] == "ack-alert" and e["status"] == 200)
    detail = api(client, f"events/{ack['seq']}", token).json()
    assert detail["variables"]["comment"] == "核实：社保待遇资格认证夜间批处理"
    assert detail["variables"]["id"] == alert_id


def _officer_token(client: Any, demo_env: Any) -> str:
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
            return await create_client(
                engine, hasher, "police", scopes=["audit:read"], client_id=f"officer-{uuid.uuid4().hex[:6]}"
            )
        finally:
            await engine.dispose()

    cid, secret = asyncio.run(make())
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_workers_taking_turns_raise_what_one_evaluator_raises(db: str) -> None:
    """Two evaluators alternating batches (each replays what the other evaluated), and a fresh one
    taking over halfway (it rebuilds its windows from the database), raise exactly the alerts a
    single evaluator raises."""
    rules = AlertRules(bulk_rows=100, probe_denials=5, **ALWAYS)
    events = [
        ev("a", rows=40),
        ev("p", denied=2),
        ev("a", rows=40, address="10.0.0.2"),
        ev("p", denied=2),
        ev("b", rows=10),
        ev("a", rows=30),
        ev("p", denied=1),
        ev("a", address="10.0.0.3"),
        ev("p", denied=3),
        ev("b", rows=95),
    ]

    async def go() -> None:
        engine = create_engine(db)

        async def evaluate(*engines: AlertEngine) -> list[tuple[str, str, int]]:
            await reset_alerts(engine)
            turn = idle = 0
            while idle < len(engines):  # take turns, a batch each, until nobody finds work
                idle = 0 if await engines[turn % len(engines)].run_once() else idle + 1
                turn += 1
            async with engine.connect() as conn:
                return sorted(
                    (a["rule"], a["principal_id"], a["seq"])
                    for a in (await list_alerts(conn, state="all"))["alerts"]
                )

        try:
            for e in events:
                await append(engine, [e])
            alone = await evaluate(AlertEngine(engine, rules, {}, batch=2))
            assert alone == [
                ("bulk_extraction", "a", 6),
                ("bulk_extraction", "b", 10),
                ("forbidden_probing", "p", 7),
                ("new_address", "a", 3),
                ("new_address", "a", 8),
            ]
            first, second = AlertEngine(engine, rules, {}, batch=2), AlertEngine(engine, rules, {}, batch=2)
            assert await evaluate(first, second) == alone
            assert (first.rebuilds, second.rebuilds) == (1, 1)  # then each replays the other's turns
            # a fresh evaluator after three batches: it reads the windows back from the database
            early = AlertEngine(engine, rules, {}, batch=2)
            await reset_alerts(engine)
            for _ in range(3):
                await early.run_once()
            late = AlertEngine(engine, rules, {}, batch=2)
            await late.run_until_caught_up()
            async with engine.connect() as conn:
                got = sorted(
                    (a["rule"], a["principal_id"], a["seq"])
                    for a in (await list_alerts(conn, state="all"))["alerts"]
                )
            assert got == alone and late.rebuilds == 1
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_an_unreadable_detail_does_not_stop_the_evaluator(db: str, caplog: pytest.LogCaptureFixture) -> None:
    """Only an edited row holds a detail that is not JSON or whose fields are not a list (verify
    reports it); the rules read it as refusing nothing and go on, with a warning that names the
    events and none of their content, live and when a fresh evaluator rebuilds its windows."""
    import logging

    from sqlalchemy import update

    from gateway.audit.models import AuditEvent

    events_table = AuditEvent.__table__
    rules = AlertRules(probe_denials=5, **ALWAYS)
    events = [ev("p", denied=2) for _ in range(5)] + [ev("p", rows=1)]

    async def go() -> tuple[list[tuple[str, int, int]], list[str]]:
        engine = create_engine(db)
        try:
            for e in events:
                await append(engine, [e])
            async with engine.begin() as conn:
                await conn.execute(
                    update(events_table)
                    .where(events_table.c.seq == 2)
                    .values(detail='"deny" secret-110101 {')
                )
                await conn.execute(
                    update(events_table)
                    .where(events_table.c.seq == 5)
                    .values(detail='{"fields": {"action": "deny"}}')
                )
            with caplog.at_level(logging.WARNING, logger="shuqiao.audit"):
                await AlertEngine(engine, rules, {}, batch=3).run_once()  # seqs 1..3
                late = AlertEngine(engine, rules, {}, batch=3)  # rebuilds over 1..3, then 4..6
                await late.run_until_caught_up()
            assert late.rebuilds == 1
            async with engine.connect() as conn:
                alerts = (await list_alerts(conn, state="all"))["alerts"]
            return [(a["rule"], a["seq"], a["detail"]["denials"]) for a in alerts], caplog.messages
        finally:
            await engine.dispose()

    alerts, messages = asyncio.run(go())
    # 2 (seq 1) + 2 (seq 3) + 2 (seq 4) = 6 ≥ 5 at seq 4; unedited, it would have fired at seq 3
    assert alerts == [("forbidden_probing", 4, 6)]
    warned = [m for m in messages if "evaluated without their fields" in m]
    assert warned == [
        "audit events [2]: detail unreadable (edited?), evaluated without their fields; "
        "run `shuqiao audit verify`",
        "audit events [2, 5]: detail unreadable (edited?), evaluated without their fields; "
        "run `shuqiao audit verify`",
    ]
    assert not any("secret-110101" in m for m in messages)


def test_a_rebuilt_bulk_window_holds_what_the_live_one_holds(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild reads per-(principal, second) sums from the database (on both backends, with
    the epoch second computed there); the windows it builds hold what evaluating every event live
    left: several events in one second, fractions of a second, and an event older than the window
    that neither keeps."""
    from tests.audit import chain_helpers

    rules = AlertRules(bulk_rows=10_000, **ALWAYS)
    base = datetime(2026, 11, 30, 8, 0, 0, 250_000, tzinfo=UTC)
    timeline = [
        (base - timedelta(hours=2), ev("a", rows=1000)),  # outside the hour by then
        (base, ev("a", rows=10)),
        (base + timedelta(microseconds=500_000), ev("a", rows=20)),  # same second
        (base + timedelta(microseconds=740_000), ev("b", rows=7)),
        (base + timedelta(seconds=1, microseconds=800_000), ev("a", rows=5)),
        (base + timedelta(minutes=59, seconds=59), ev("b", rows=3)),
        (base + timedelta(minutes=59, seconds=59, microseconds=900_000), ev("c")),  # no rows
    ]

    async def go(engine: Any) -> None:
        await reset_alerts(engine)
        for when, event in timeline:
            clock = type("At", (), {"now": staticmethod(lambda tz=None, at=when: at)})
            with monkeypatch.context() as mp:
                mp.setattr(chain_helpers, "datetime", clock)
                await append(engine, [event])
        live = AlertEngine(engine, rules, {}, batch=100)
        await live.run_until_caught_up()
        rebuilt = AlertEngine(engine, rules, {}, batch=100)
        async with engine.connect() as conn:
            cursor = await rebuilt._cursor(conn)
            await rebuilt._catch_up(conn, cursor)
        assert rebuilt.rebuilds == 1
        totals = {p: (live._state.bulk.total(p), rebuilt._state.bulk.total(p)) for p in "abc"}
        assert totals == {"a": (35, 35), "b": (10, 10), "c": (0, 0)}

    run_with_engine(db, go)
