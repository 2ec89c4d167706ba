"""The SQL behind a page, as the gateway runs it: `totalCount` is counted only when it is asked
for, and a filtered, ordered page (and its count) can be read from the catalogue's declared
composite index instead of every matching row (issue 18: lookups and pages at a province's
scale; bench/scale_bench.py measures it on 10,000,000 rows)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Select, text

import resolvers.execute as execute_mod
from tests.conftest import DemoEnv, gql
from tests.support import on_db

PAGE = """query($city: String!, $day: Date!) { airQualityDaily(first: 20,
  where: {city: {eq: $city}, date: {lte: $day}}, orderBy: [{field: DATE, direction: DESC}]) {
  %s edges { node { date aqi } } pageInfo { hasNextPage endCursor } } }"""
VARS = {"city": "西安市", "day": "2024-06-11"}
INDEX = "ix_pool_air_quality_daily__city__date"


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Select]]:
    """Every statement the resolvers run while the test lasts."""
    seen: list[Select] = []
    real = execute_mod.fetch_all

    async def spy(conn: Any, statement: Select) -> Any:
        seen.append(statement)
        return await real(conn, statement)

    monkeypatch.setattr(execute_mod, "fetch_all", spy)
    yield seen


def _counts(statements: list[Select]) -> int:
    return sum("count(" in str(s).lower() for s in statements)


def test_total_count_is_counted_only_when_selected(
    client: Any, tokens: dict[str, str], statements: list[Select]
) -> None:
    plain = gql(client, "share", PAGE % "", token=tokens["eco"], variables=VARS).json()
    assert "errors" not in plain and len(plain["data"]["airQualityDaily"]["edges"]) == 20
    assert statements and _counts(statements) == 0

    statements.clear()
    counted = gql(client, "share", PAGE % "totalCount", token=tokens["eco"], variables=VARS).json()
    assert counted["data"]["airQualityDaily"]["totalCount"] > 20
    assert len(statements) == _counts(statements) == 1  # in the page's statement: one round trip

    statements.clear()  # nothing matches and no cursor: the empty page itself says 0
    none = {**VARS, "day": "2000-01-01"}
    empty = gql(client, "share", PAGE % "totalCount", token=tokens["eco"], variables=none).json()
    assert empty["data"]["airQualityDaily"]["totalCount"] == 0 and len(statements) == 1

    # a cursor past the last row: no row carries the count, so it is counted on its own
    early = {**VARS, "day": "2024-01-20"}  # the small demo's year starts on 1 January: 20 rows
    first = gql(client, "share", PAGE % "", token=tokens["eco"], variables=early).json()
    end = first["data"]["airQualityDaily"]["pageInfo"]
    assert end["hasNextPage"] is False
    statements.clear()
    after = PAGE.replace("first: 20,", "first: 20, after: $after,").replace(
        "$day: Date!", "$day: Date!, $after: String"
    )
    past = gql(
        client,
        "share",
        after % "totalCount",
        token=tokens["eco"],
        variables={**early, "after": end["endCursor"]},
    )
    assert past.json()["data"]["airQualityDaily"]["totalCount"] == 20
    assert len(statements) == _counts(statements) == 2  # the (empty) page's, then a COUNT alone


def test_the_filtered_ordered_page_and_its_count_can_use_the_declared_index(
    client: Any, tokens: dict[str, str], statements: list[Select], demo_env: DemoEnv
) -> None:
    """EXPLAIN (no ANALYZE) of the statement the gateway ran, with the other access paths
    priced out: the declared (city, date) index serves the filter, the order (no sort of all
    the matching rows) and the count (PostgreSQL: from the index alone)."""
    body = gql(client, "share", PAGE % "totalCount", token=tokens["eco"], variables=VARS).json()
    assert "errors" not in body
    (statement,) = statements

    async def explain(engine: Any) -> str:
        sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                for knob in ("enable_seqscan", "enable_bitmapscan"):
                    await conn.execute(text(f"SET {knob} = off"))
                rows = await conn.execute(text("EXPLAIN " + sql))
            else:
                rows = await conn.execute(text("EXPLAIN QUERY PLAN " + sql))
            return "\n".join(str(r[-1]) for r in rows)

    plan = on_db(demo_env, explain)
    assert INDEX in plan, plan
    if demo_env.backend == "postgres":
        assert f"Index Only Scan using {INDEX}" in plan, plan  # the count reads no table rows
        # no Sort of every matching row; an Incremental Sort only orders ties on the same date
        assert not re.search(r"(^|->  )Sort  \(", plan, flags=re.M), plan
