"""Watermarked deliveries through the HTTP app (on SQLite and PostgreSQL): each identified
consumer gets its own deterministic marks within tolerance; anonymous callers and fields
without a tolerance get the stored values; the audit event names the watermark, never its key."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import gql

Q = """{ enterpriseRegistration(first: 200, orderBy: [{field: CREDIT_CODE}]) {
  edges { node { creditCode name registeredCapital establishmentDate } } } }"""


def rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert "errors" not in body, body
    return [e["node"] for e in body["data"]["enterpriseRegistration"]["edges"]]


@pytest.fixture(scope="module")
def deliveries(client: Any, tokens: dict[str, str], demo_env: Any) -> dict[str, list[dict[str, Any]]]:
    out = {
        "anonymous": rows(gql(client, "open", Q).json()),
        "hrss": rows(gql(client, "share", Q, token=tokens["hrss"]).json()),
        "samr": rows(gql(client, "share", Q, token=tokens["samr"]).json()),
        "hrss_again": rows(gql(client, "share", Q, token=tokens["hrss"]).json()),
        "bank": rows(
            gql(
                client, "open", Q, headers={"X-API-Key": demo_env.credentials["api_keys"]["demo-bank"]}
            ).json()
        ),
    }
    return out


def _stored(demo_env: Any) -> dict[str, Decimal]:
    async def go() -> dict[str, Decimal]:
        from sqlalchemy import text

        from gateway.db import create_engine

        engine = create_engine(demo_env.settings.database_url)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(
                    text("SELECT credit_code, registered_capital FROM pool_enterprise_registration")
                )
                return {r[0]: Decimal(str(r[1])) for r in result if r[1] is not None}
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_anonymous_open_data_is_untouched(deliveries: dict[str, list[dict[str, Any]]], demo_env: Any) -> None:
    stored = _stored(demo_env)
    for r in deliveries["anonymous"]:
        if r["registeredCapital"] is not None:
            assert Decimal(r["registeredCapital"]) == stored[r["creditCode"]]


def test_each_consumer_gets_its_own_marks_within_tolerance(
    deliveries: dict[str, list[dict[str, Any]]], demo_env: Any
) -> None:
    stored = _stored(demo_env)
    changed: dict[str, int] = {}
    for who in ("hrss", "samr", "bank"):
        n = 0
        for r in deliveries[who]:
            if r["registeredCapital"] is None:
                continue
            delta = abs(Decimal(r["registeredCapital"]) - stored[r["creditCode"]])
            assert delta <= Decimal("0.01")
            n += delta != 0
        changed[who] = n
    assert all(n > 10 for n in changed.values()), changed
    hrss = [r["registeredCapital"] for r in deliveries["hrss"]]
    assert hrss == [r["registeredCapital"] for r in deliveries["hrss_again"]]  # nothing to average
    assert hrss != [r["registeredCapital"] for r in deliveries["samr"]]
    # untoleranced fields are the same for everyone
    assert [r["name"] for r in deliveries["hrss"]] == [r["name"] for r in deliveries["anonymous"]]
    assert [r["establishmentDate"] for r in deliveries["hrss"]] == [
        r["establishmentDate"] for r in deliveries["samr"]
    ]


def test_filtering_still_uses_true_values(client: Any, tokens: dict[str, str], demo_env: Any) -> None:
    stored = _stored(demo_env)
    code, value = sorted(stored.items())[0]
    where = f'{{registeredCapital: {{eq: "{value}"}}}}'
    q = f"{{ enterpriseRegistration(where: {where}) {{ edges {{ node {{ creditCode }} }} }} }}"
    found = [r["creditCode"] for r in rows(gql(client, "share", q, token=tokens["hrss"]).json())]
    assert code in found
