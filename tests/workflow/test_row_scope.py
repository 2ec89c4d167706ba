"""An approved row scope is enforced in the SQL, on SQLite and PostgreSQL: a department granted
population for two districts reads only their rows — in the rows, totalCount, its own filters,
every page of a cursor walk, and entity lookups — and a scoped grant never narrows what an
unscoped one gives (it is withheld instead, with a reason)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from catalogue.service import save_department
from catalogue.spec import DepartmentSpec
from gateway.crypto.service import register_department_key
from gateway.grants import service as grants
from gateway.identity.clients import create_client
from gateway.workflow import applications as apps
from keys import sm2
from policies.workflow import Actor
from tests.conftest import gql
from tests.identity.conftest import hasher
from tests.support import on_db

DEPT = "scopetest"
POLICE = Actor("police-steward", department="police", apply=True, approve=True)
YEAR = datetime.now(UTC) + timedelta(days=365)


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


@pytest.fixture(scope="module")
def scoped(client: Any, demo_env: Any, tokens: dict[str, str]) -> Iterator[dict[str, Any]]:
    """A department of its own (no other grant, an SM2 key so idNumber lookups are allowed),
    granted population's name, district and idNumber for the two smallest districts."""
    on_db(demo_env, lambda e: save_department(e, DepartmentSpec(DEPT, "行级范围测试厅", "Row scope test")))
    cid, secret = on_db(
        demo_env,
        lambda e: create_client(e, hasher(demo_env), DEPT, client_id=f"{DEPT}-{secrets.token_hex(3)}"),
    )
    key = sm2.generate_private_key()
    on_db(demo_env, lambda e: register_department_key(e, DEPT, key.public_key.to_pem()))
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)).json()[
        "access_token"
    ]

    async def counts(engine: Any) -> dict[str, int]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT district, count(*) FROM pool_population GROUP BY district")
            )
            return {r[0]: r[1] for r in rows}

    by_district = on_db(demo_env, counts)
    smallest = sorted(by_district, key=lambda d: (by_district[d], d))
    inside, outside = smallest[:2], smallest[2]
    before = gql(client, "share", "{ population(first: 1) { totalCount } }", token=token).json()
    assert _codes(before) == ["FORBIDDEN"]
    applicant = Actor(f"{DEPT}-system", department=DEPT, apply=True)
    app = on_db(
        demo_env,
        lambda e: apps.create(
            e,
            None,
            applicant,
            dataset="population",
            fields={"name": None, "district": None, "idNumber": None},
            purpose="行级范围测试",
            legal_basis="测试",
            period_end=YEAR,
            row_scope={"district": {"in": inside}},
            submit_now=True,
        ),
    )
    done = on_db(demo_env, lambda e: apps.approve(e, None, POLICE, app.id))
    ids = {}
    for d in (*inside, outside):
        q = (
            "query($d: String!) { population(first: 1, where: {district: {eq: $d}}) "
            "{ edges { node { idNumber } } } }"
        )
        body = gql(client, "share", q, token=tokens["police"], variables={"d": d}).json()
        ids[d] = body["data"]["population"]["edges"][0]["node"]["idNumber"]
    yield {
        "token": token,
        "inside": inside,
        "outside": outside,
        "total": sum(by_district[d] for d in inside),
        "counts": by_district,
        "ids": ids,
        "grant": done.grant_id,
    }
    row = on_db(demo_env, lambda e: grants.get_grant(e, done.grant_id))
    if row.status != "revoked":
        on_db(demo_env, lambda e: grants.revoke_grant(e, done.grant_id, reason="test over"))


def test_rows_and_total_count(client: Any, scoped: dict[str, Any]) -> None:
    q = "{ population(first: 500) { totalCount edges { node { district name } } } }"
    body = gql(client, "share", q, token=scoped["token"]).json()
    assert "errors" not in body, body
    conn = body["data"]["population"]
    assert conn["totalCount"] == scoped["total"] and len(conn["edges"]) == scoped["total"]
    assert {e["node"]["district"] for e in conn["edges"]} == set(scoped["inside"])
    assert all("*" in e["node"]["name"] for e in conn["edges"])  # masked, as granted


def test_filters_stay_inside(client: Any, scoped: dict[str, Any]) -> None:
    q = "query($d: String!) { population(where: {district: {eq: $d}}) { totalCount } }"
    outside = gql(client, "share", q, token=scoped["token"], variables={"d": scoped["outside"]}).json()
    assert outside["data"]["population"]["totalCount"] == 0
    first = scoped["inside"][0]
    inside = gql(client, "share", q, token=scoped["token"], variables={"d": first}).json()
    assert inside["data"]["population"]["totalCount"] == scoped["counts"][first]
    neq = "query($d: String!) { population(where: {district: {neq: $d}}) { totalCount } }"
    rest = gql(client, "share", neq, token=scoped["token"], variables={"d": first}).json()
    assert rest["data"]["population"]["totalCount"] == scoped["total"] - scoped["counts"][first]


def test_a_cursor_walk_never_leaves_the_scope(client: Any, scoped: dict[str, Any]) -> None:
    q = (
        "query($after: String) { population(first: 3, after: $after, "
        "orderBy: [{field: DISTRICT, direction: DESC}]) "
        "{ edges { node { district } } pageInfo { hasNextPage endCursor } } }"
    )
    seen, after, pages = [], None, 0
    while True:
        body = gql(client, "share", q, token=scoped["token"], variables={"after": after}).json()
        assert "errors" not in body, body
        conn = body["data"]["population"]
        seen += [e["node"]["district"] for e in conn["edges"]]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert len(seen) == scoped["total"] and set(seen) == set(scoped["inside"])
    assert pages == -(-scoped["total"] // 3)


def test_entity_lookups_stay_inside(client: Any, scoped: dict[str, Any]) -> None:
    q = "query($id: String!) { person(idNumber: $id) { population { district } } }"
    inside = scoped["inside"][0]
    hit = gql(client, "share", q, token=scoped["token"], variables={"id": scoped["ids"][inside]}).json()
    assert "errors" not in hit, hit
    assert hit["data"]["person"]["population"] == [{"district": inside}]
    miss = gql(
        client, "share", q, token=scoped["token"], variables={"id": scoped["ids"][scoped["outside"]]}
    ).json()
    assert "errors" not in miss, miss
    assert not (miss["data"]["person"] or {}).get("population")


def test_a_scoped_grant_never_narrows_an_unscoped_one(
    client: Any, demo_env: Any, tokens: dict[str, str]
) -> None:
    """hrss holds the demo's unscoped grant on population: a scoped grant for phone is withheld
    (hrss keeps every row of its other fields, and gets no phone outside the scope)."""
    hrss = Actor("hrss-dev", department="hrss", apply=True)
    app = on_db(
        demo_env,
        lambda e: apps.create(
            e,
            None,
            hrss,
            dataset="population",
            fields={"phone": "clear"},
            purpose="p",
            legal_basis="b",
            period_end=YEAR,
            row_scope={"district": {"in": ["雁塔区"]}},
            submit_now=True,
        ),
    )
    done = on_db(demo_env, lambda e: apps.approve(e, None, POLICE, app.id))
    try:
        q = "{ population(first: 5) { totalCount edges { node { name phone } } } }"
        body = gql(client, "share", q, token=tokens["hrss"]).json()
        all_rows = gql(client, "share", "{ population { totalCount } }", token=tokens["police"]).json()
        assert body["data"]["population"]["totalCount"] == all_rows["data"]["population"]["totalCount"]
        assert all(e["node"]["phone"] is None for e in body["data"]["population"]["edges"])
        denied = [e for e in body["errors"] if e["path"][-1] == "phone"]
        assert denied and all("row scope" in e["extensions"]["reason"] for e in denied)
    finally:
        on_db(demo_env, lambda e: grants.revoke_grant(e, done.grant_id, reason="test over"))


def test_revoked_the_rows_are_refused(client: Any, demo_env: Any, scoped: dict[str, Any]) -> None:
    on_db(demo_env, lambda e: grants.revoke_grant(e, scoped["grant"], reason="scope test over"))
    body = gql(client, "share", "{ population(first: 1) { totalCount } }", token=scoped["token"]).json()
    assert _codes(body) == ["FORBIDDEN"]
