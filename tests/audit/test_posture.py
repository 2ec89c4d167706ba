"""The posture dashboard's JSON (gateway.audit.posture) on SQLite and PostgreSQL: known traffic
written to an empty chain, every panel's numbers asserted; and the JSON twins over HTTP
(/audit/api/posture and /audit/api/posture/{panel}) answer what the module computes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update

from gateway.access_log import AccessEvent
from gateway.audit import posture
from gateway.audit.alerts import ALERTS
from gateway.audit.chain import GENESIS_HASH, event_hash
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent
from gateway.audit.store import event_row
from gateway.db import create_engine

NOW = datetime.now(UTC).replace(microsecond=0)
PERIOD = posture.Period(NOW - timedelta(days=1), NOW + timedelta(minutes=1), NOW)


def _event(
    tier: str,
    consumer: str | None,
    principal: str,
    status: int = 200,
    fields: list[tuple[str, str, str]] = (),
    purpose: str | None = None,  # type: ignore[assignment]
    operation: str = "q",
    grant: int | None = None,
) -> AccessEvent:
    datasets = sorted({d for d, _, _ in fields})
    return AccessEvent(
        request_id=f"r-{principal}-{operation}",
        tier=tier,
        principal_kind="department" if consumer else "anonymous",
        principal_id=principal,
        consumer=consumer,
        client_address="10.0.0.1",
        operation_name=operation,
        operation_type="query",
        query_digest=None,
        status=status,
        error_codes=["FORBIDDEN_FIELD"] if any(a == "deny" for _, _, a in fields) else [],
        latency_ms=1.0,
        fields=[{"dataset": d, "field": f, "action": a, "reason": "test"} for d, f, a in fields],
        reads=[{"dataset": d, "rows": 1, "grant_id": grant, "purpose": purpose} for d in datasets],
    )


async def _append(engine: Any, timed: list[tuple[datetime, AccessEvent]]) -> None:
    head_t = AuditChainHead.__table__
    async with engine.begin() as conn:
        head = (await conn.execute(select(head_t.c.seq, head_t.c.hash).where(head_t.c.id == HEAD_ID))).first()
        seq, prev = (int(head.seq), str(head.hash)) if head else (0, GENESIS_HASH)
        for at, event in timed:
            seq += 1
            row = event_row(event, at)
            row["seq"], row["prev_hash"] = seq, prev
            row["hash"] = prev = event_hash(row)
            await conn.execute(insert(AuditEvent.__table__), [row])
        await conn.execute(update(head_t).where(head_t.c.id == HEAD_ID).values(seq=seq, hash=prev))


async def _catalogue(engine: Any) -> None:
    from catalogue.models import Dataset, DatasetField, Department
    from gateway.grants.models import GrantRecord

    async with engine.begin() as conn:
        await conn.execute(delete(GrantRecord.__table__))
        await conn.execute(delete(ALERTS))
        if (await conn.execute(select(Department.__table__.c.code))).first() is None:
            await conn.execute(
                insert(Department.__table__), [{"code": "police", "name": "公安", "name_en": ""}]
            )
            for i, code in enumerate(("population", "weather")):
                await conn.execute(
                    insert(Dataset.__table__),
                    [
                        {
                            "id": i + 1,
                            "code": code,
                            "resource_code": f"R{i}",
                            "name": code,
                            "name_en": "",
                            "description": "",
                            "department_code": "police",
                            "category": "base",
                            "theme": "",
                            "update_cycle": "daily",
                            "format": "table",
                            "share": "conditional",
                            "share_conditions": "",
                            "open": "none",
                            "open_conditions": "",
                            "published": True,
                            "created_at": NOW,
                            "updated_at": NOW,
                        }
                    ],
                )
            fields = [
                (1, "id_number", 4, "sensitive"),
                (1, "name", 3, "personal"),
                (1, "gender", 1, "none"),
                (2, "temp", 1, "none"),
            ]
            for n, (ds, name, level, pi) in enumerate(fields):
                await conn.execute(
                    insert(DatasetField.__table__),
                    [
                        {
                            "dataset_id": ds,
                            "position": n,
                            "name": name,
                            "type": "string",
                            "title": name,
                            "description": "",
                            "level": level,
                            "pi": pi,
                            "open_personal": False,
                            "nullable": True,
                            "indexed": False,
                        }
                    ],
                )
        grants = [("approved", 5), ("approved", 90), ("revoked", 3), ("approved", -1)]
        for status, days in grants:
            await conn.execute(
                insert(GrantRecord.__table__),
                [
                    {
                        "tier": "share",
                        "dataset_code": "population",
                        "consumer": "hrss",
                        "fields": "name",
                        "clear_fields": "",
                        "purpose": f"p{days}",
                        "status": status,
                        "expires_at": NOW + timedelta(days=days),
                        "created_at": NOW,
                    }
                ],
            )
        alerts = [
            ("forbidden_probing", "samr", timedelta(minutes=10), None),
            ("forbidden_probing", "samr", timedelta(days=2), None),
            ("l4_out_of_hours", "hrss", timedelta(hours=1), NOW),
        ]
        for n, (rule, consumer, age, acked) in enumerate(alerts):
            await conn.execute(
                insert(ALERTS),
                [
                    {
                        "rule": rule,
                        "principal_id": f"demo-{consumer}",
                        "consumer": consumer,
                        "seq": 1000 + n,
                        "occurred_at": NOW - age,
                        "raised_at": NOW - age,
                        "summary": "s",
                        "detail": "{}",
                        "acknowledged_at": acked,
                        "acknowledged_by": "x" if acked else None,
                    }
                ],
            )


def _traffic() -> list[tuple[datetime, AccessEvent]]:
    t = NOW - timedelta(hours=2)
    pop_id_name = [("population", "id_number", "allow"), ("population", "name", "mask")]
    out = [
        (
            NOW - timedelta(days=3),
            _event(
                "share", "hrss", "demo-hrss", fields=[("population", "gender", "allow")], operation="baseline"
            ),
        )
    ]
    out += [
        (t, _event("share", "hrss", "demo-hrss", fields=pop_id_name, purpose="社保核验", operation=f"h{i}"))
        for i in range(3)
    ]
    out += [
        (
            t,
            _event(
                "share", "hrss", "demo-hrss", fields=[("population", "gender", "allow")], purpose="社保核验"
            ),
        )
    ]
    out += [
        (
            t,
            _event(
                "share",
                "samr",
                "demo-samr",
                fields=[("population", "name", "allow")],
                purpose="市场监管",
                operation=f"s{i}",
            ),
        )
        for i in range(2)
    ]
    out += [
        (
            t,
            _event(
                "share",
                "samr",
                "demo-samr",
                403,
                fields=[("population", "id_number", "deny")],
                operation="probe",
            ),
        )
    ]
    out += [
        (t, _event("open", None, "anonymous", 429 if i == 0 else 200, operation=f"o{i}")) for i in range(4)
    ]
    out += [
        (t, _event("share", "tax", "demo-tax", fields=[("weather", "temp", "allow")], operation=f"t{i}"))
        for i in range(12)
    ]
    out += [(t, _event("audit", "police", "officer", operation="verify"))]
    return out


def test_every_panel_counts_the_known_traffic(db: str) -> None:
    async def go() -> dict[str, Any]:
        engine = create_engine(db)
        try:
            await _catalogue(engine)
            await _append(engine, _traffic())
            async with engine.connect() as conn:
                return await posture.compute(conn, PERIOD)
        finally:
            await engine.dispose()

    doc = asyncio.run(go())
    t = doc["traffic"]
    assert t["total"] == {"requests": 24, "refused": 2}
    assert {r["tier"]: (r["requests"], r["refused"]) for r in t["by_tier"]} == {
        "share": (19, 1),
        "open": (4, 1),
        "audit": (1, 0),
    }
    assert {r["department"]: r["requests"] for r in t["by_department"]} == {
        "tax": 12,
        "hrss": 4,
        "samr": 3,
        None: 4,
        "police": 1,
    }
    cell = next(c for c in t["cells"] if c["department"] == "samr")
    assert cell["search"]["department"] == "samr" and cell["search"]["tier"] == "share"

    s = doc["sensitive"]
    assert s["watched_fields"] == 2 and s["field_reads"] == 8  # the refused probe is not a read
    groups = {
        (g["consumer"], g["purpose"]): (g["events"], g["field_reads"], g["l4"])
        for g in s["by_consumer_purpose"]
    }
    assert groups == {("hrss", "社保核验"): (3, 6, 3), ("samr", "市场监管"): (2, 2, 0)}

    a = doc["alerts"]
    assert a["open"] == 2
    assert a["by_rule"] == [
        {"rule": "forbidden_probing", "open": 2, "lt_1h": 1, "lt_24h": 0, "lt_7d": 1, "older": 0}
    ]

    g = doc["grants"]
    assert [x["purpose"] for x in g["expiring"]] == ["p5"] and g["expiring"][0]["days_left"] in (4, 5)

    u = doc["unusual"]
    assert [(v["consumer"], v["requests"]) for v in u["volume_above_baseline"]] == [("tax", 12)]
    assert [(f["consumer"], f["dataset"]) for f in u["first_access"]] == [
        ("samr", "population"),
        ("tax", "weather"),
    ]
    assert u["forbidden_probes"] == [
        {
            "principal": "demo-samr",
            "consumer": "samr",
            "refusals": 1,
            "search": PERIOD.search(principal="demo-samr", decision="deny"),
        }
    ]
    assert u["off_hours_l4"] == [{"consumer": "hrss", "alerts": 1}]
    assert u["probing_alerts"] == [{"consumer": "samr", "alerts": 1}]  # the other is older than the period

    c = doc["chain"]
    assert c["head_seq"] == 25 and c["last_checkpoint"] is None and c["checkpoint_lag"] == 25
    assert c["last_verified"]["seq"] == 25 and c["index_lag"] == 0  # posture indexed what it read


def test_a_period_outside_the_traffic_counts_nothing(db: str) -> None:
    async def go() -> dict[str, Any]:
        engine = create_engine(db)
        try:
            await _catalogue(engine)
            await _append(engine, _traffic())
            async with engine.connect() as conn:
                early = posture.Period(NOW - timedelta(days=20), NOW - timedelta(days=10), NOW)
                return await posture.compute(conn, early, ["traffic", "sensitive", "unusual"])
        finally:
            await engine.dispose()

    doc = asyncio.run(go())
    assert set(doc) == {"from", "to", "computed_at", "traffic", "sensitive", "unusual"}
    assert doc["traffic"]["total"] == {"requests": 0, "refused": 0}
    assert doc["sensitive"]["field_reads"] == 0 and doc["unusual"]["first_access"] == []


def test_json_twins_over_http(client: Any, demo_env: Any) -> None:
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str | None]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
            return await create_client(engine, hasher, "police", scopes=["audit:read"])
        finally:
            await engine.dispose()

    cid, secret = asyncio.run(make())
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)).json()[
        "access_token"
    ]
    auth = {"Authorization": f"Bearer {token}"}
    # a closed period (ending before this test's calls), so the counts cannot move under it
    start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    end = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    whole = client.get("/audit/api/posture", params={"from": start, "to": end}, headers=auth)
    assert whole.status_code == 200, whole.text
    doc = whole.json()
    assert set(doc) >= set(posture.PANELS)

    async def direct() -> dict[str, Any]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            async with engine.connect() as conn:
                period = posture.Period.from_params({"from": start, "to": end})
                return await posture.compute(conn, period, ["traffic", "sensitive"])
        finally:
            await engine.dispose()

    expected = asyncio.run(direct())
    for panel in ("traffic", "sensitive"):
        one = client.get(f"/audit/api/posture/{panel}", params={"from": start, "to": end}, headers=auth)
        assert one.status_code == 200 and set(one.json()) == {"from", "to", "computed_at", panel}
        assert one.json()[panel] == expected[panel] == doc[panel]
    assert client.get("/audit/api/posture/nope", headers=auth).status_code == 404
    bad = client.get("/audit/api/posture", params={"from": end, "to": start}, headers=auth)
    assert bad.status_code == 400
    assert client.get("/audit/api/posture").status_code == 401
    view = client.get("/audit/api/consumer", params={"code": "hrss", "from": start, "to": end}, headers=auth)
    assert view.status_code == 200 and view.json()["consumer"] == "hrss"
    assert client.get("/audit/api/consumer", headers=auth).status_code == 400


def test_consumer_view_puts_each_read_beside_its_grant(db: str) -> None:
    from gateway.audit import investigate
    from gateway.grants.models import GrantRecord

    async def go() -> dict[str, Any]:
        engine = create_engine(db)
        try:
            await _catalogue(engine)
            async with engine.connect() as conn:
                g = GrantRecord.__table__
                gid = (await conn.execute(select(g.c.id).where(g.c.purpose == "p5"))).scalar_one()
            t = NOW - timedelta(hours=1)
            pop = [("population", "id_number", "allow"), ("population", "name", "mask")]
            await _append(
                engine,
                [
                    (
                        t,
                        _event(
                            "share",
                            "hrss",
                            "demo-hrss",
                            fields=pop,
                            purpose="社保核验",
                            grant=gid,
                            operation="a",
                        ),
                    ),
                    (
                        t,
                        _event(
                            "share",
                            "hrss",
                            "demo-hrss",
                            fields=pop,
                            purpose="社保核验",
                            grant=gid,
                            operation="b",
                        ),
                    ),
                    (t, _event("share", "hrss", "demo-hrss", 403, operation="refused")),
                    (t, _event("share", "samr", "demo-samr", fields=pop, purpose="x", operation="other")),
                    (
                        NOW - timedelta(days=3),
                        _event("share", "hrss", "demo-hrss", fields=pop, operation="old"),
                    ),
                ],
            )
            async with engine.connect() as conn:
                doc = await investigate.consumer_view(conn, "hrss", PERIOD)
            doc["grant_id"] = gid
            return doc
        finally:
            await engine.dispose()

    doc = asyncio.run(go())
    gid = doc["grant_id"]
    assert (doc["requests"], doc["refused"]) == (3, 1)  # the samr event and the old one are not counted
    assert doc["principals"] == [{"principal": "demo-hrss", "events": 3}]
    [pop] = doc["datasets"]
    assert pop["dataset"] == "population" and pop["events"] == 2 and pop["purposes"] == ["社保核验"]
    assert pop["grant_ids"] == [gid] and pop["fields"] == {"id_number": {"allow": 2}, "name": {"mask": 2}}
    assert len(doc["reads"]) == 2
    assert all(r["grants"][0]["id"] == gid and r["grants"][0]["purpose"] == "p5" for r in doc["reads"])
    assert {g["purpose"] for g in doc["grants"]} == {
        "p5",
        "p90",
        "p3",
        "p-1",
    }  # every grant of hrss, any state


def test_person_view_finds_every_read_of_one_id_number_by_its_blind_index(
    client: Any, demo_env: Any, tokens: dict[str, str]
) -> None:
    """A filter and an entity lookup by one 身份证号 are found; another person's is not; the log
    holds the blind value, never the number."""
    from gateway.demo.generate import DemoGenerator
    from tests.conftest import gql

    people = DemoGenerator("small").rows("population")
    someone, other = next(people)[0], next(people)[0]
    start = datetime.now(UTC).isoformat()
    q = "query($id: String!) { population(where: {idNumber: {eq: $id}}) { totalCount } }"
    e = "query($id: String!) { person(idNumber: $id) { population { name } } }"
    for query, who in ((q, someone), (e, someone.lower()), (q, other)):
        body = gql(client, "share", query, token=tokens["police"], variables={"id": who}).json()
        assert "errors" not in body, body
    auth = {"Authorization": f"Bearer {_officer_token(client, demo_env)}"}
    view = client.get("/audit/api/person", params={"id_number": someone, "from": start}, headers=auth)
    assert view.status_code == 200, view.text
    doc = view.json()
    assert "population" in doc["datasets"]
    reads = [r for r in doc["reads"] if r["dataset"] == "population"]
    assert len(reads) == 2 and {r["consumer"] for r in reads} == {"police"}
    assert someone not in view.text
    # the events hold the blind value, not the number
    seq = reads[0]["seq"]
    event = client.get(f"/audit/api/events/{seq}", headers=auth).json()
    assert someone not in str(event.get("detail")) and someone not in str(event.get("fields"))
    assert client.get("/audit/api/person", headers=auth).status_code == 400


def _officer_token(client: Any, demo_env: Any) -> str:
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    async def make() -> tuple[str, str | None]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
            return await create_client(engine, hasher, "police", scopes=["audit:read"])
        finally:
            await engine.dispose()

    cid, secret = asyncio.run(make())
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))
    return r.json()["access_token"]
