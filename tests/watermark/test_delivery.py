"""Watermarked deliveries through the HTTP app (on SQLite and PostgreSQL): each identified
consumer gets its own deterministic marks within tolerance; anonymous callers and fields
without a tolerance get the stored values; the audit event names the watermark, never its key."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
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


def test_a_field_asked_alone_is_marked_as_with_the_others(client: Any, tokens: dict[str, str]) -> None:
    """Scheme v2 shares one digest per row among its marked fields, each at a slot the catalogue
    fixes: the capital asked alone, the address alone, and both (in either order) are delivered
    alike — a query's selection never moves a mark."""

    def ask(fields: str) -> dict[str, dict[str, Any]]:
        q = f"""{{ enterpriseRegistration(first: 200, orderBy: [{{field: CREDIT_CODE}}]) {{
          edges {{ node {{ {fields} }} }} }} }}"""
        return {r["creditCode"]: r for r in rows(gql(client, "share", q, token=tokens["hrss"]).json())}

    both = ask("creditCode registeredCapital registeredAddress")
    reversed_ = ask("registeredAddress name creditCode registeredCapital")
    capital = ask("creditCode registeredCapital")
    address = ask("registeredAddress creditCode")
    assert len(both) == 200
    for code, r in both.items():
        assert (
            capital[code]["registeredCapital"]
            == r["registeredCapital"]
            == reversed_[code]["registeredCapital"]
        )
        assert (
            address[code]["registeredAddress"]
            == r["registeredAddress"]
            == reversed_[code]["registeredAddress"]
        )
    assert any(any("０" <= c <= "９" for c in r["registeredAddress"] or "") for r in both.values())


def test_the_trace_tries_v1_for_keys_the_audit_log_records_v1_deliveries_with(tmp_path: Any) -> None:
    """Deliveries made before scheme v2 are recorded as `ak-parity-hmacsm3-v1:kid:recipient`: a
    key with such a delivery is traced under v1 as well as v2; a key without, under v2 only."""
    from sqlalchemy import insert

    from gateway.audit.models import AuditEvent
    from gateway.db import create_engine
    from gateway.watermark_service import recorded_schemes
    from policies.watermark import SCHEME_V1, SCHEME_V2

    async def go() -> dict[str, list[str]]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: AuditEvent.__table__.create(c))  # type: ignore[attr-defined]
                for seq, kid, scheme in ((1, "wm-old", SCHEME_V1), (2, "wm-new", SCHEME_V2)):
                    read = {"dataset": "d", "watermark": {"id": f"{scheme}:{kid}:hrss", "scheme": scheme}}
                    await conn.execute(
                        insert(AuditEvent.__table__).values(  # type: ignore[attr-defined]
                            seq=seq,
                            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                            request_id="r",
                            tier="share",
                            principal_kind="client",
                            principal_id="c",
                            status=200,
                            latency_ms=1.0,
                            detail=json.dumps({"reads": [read]}),
                            prev_hash="0" * 64,
                            hash="1" * 64,
                        )
                    )
            return await recorded_schemes(engine, ["wm-old", "wm-new", "wm-none"])
        finally:
            await engine.dispose()

    got = asyncio.run(go())
    assert got == {"wm-old": [SCHEME_V2, SCHEME_V1], "wm-new": [SCHEME_V2], "wm-none": [SCHEME_V2]}
