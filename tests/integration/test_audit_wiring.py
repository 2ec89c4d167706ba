"""With SHUQIAO_AUDIT_STORE=chain every GraphQL request, refused ones included, lands in
the hash-chained audit table before its response, and the chain verifies."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.audit import verify_chain
from gateway.db import create_engine
from tests.conftest import gql


def _events(url: str) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        from sqlalchemy import func, select

        from gateway.audit.models import AuditEvent

        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                n = (await conn.execute(select(func.count()).select_from(AuditEvent))).scalar_one()
            return n, await verify_chain(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_every_request_is_chained(demo_env: Any, tokens: dict[str, str]) -> None:
    settings = replace(demo_env.settings, audit_store="chain")
    before, _ = _events(settings.database_url)
    with TestClient(create_app(settings)) as c:
        assert gql(c, "open", "{ enterpriseRegistration(first: 1) { totalCount } }").status_code == 200
        assert (
            gql(c, "share", "{ population { edges { node { name } } } }", token=tokens["samr"]).status_code
            == 200
        )
        assert gql(c, "share", "{ __typename }").status_code == 401
        assert gql(c, "open", "{ nope }").status_code == 400
    after, report = _events(settings.database_url)
    assert after - before == 4
    assert report.ok, report


def test_no_audit_record_no_data_on_either_tier(demo_env: Any, tokens: dict[str, str]) -> None:
    """Fail closed: when the access event cannot be written the caller gets 503 AUDIT_UNAVAILABLE
    and none of the rows that were read."""
    from gateway.app import build_state

    class Broken:
        async def record(self, _event: Any) -> None:
            raise RuntimeError("disk full")

    query = "{ enterpriseRegistration(first: 3) { edges { node { creditCode name } } } }"
    with TestClient(create_app(demo_env.settings)) as ok:
        rows = gql(ok, "share", query, token=tokens["samr"]).json()["data"]["enterpriseRegistration"]["edges"]
    assert len(rows) == 3
    state = build_state(demo_env.settings, access_log=Broken())
    with TestClient(create_app(demo_env.settings, state=state)) as broken:
        for tier, token in (("share", tokens["samr"]), ("open", None)):
            r = gql(broken, tier, query, token=token)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "5"
            body = r.json()
            assert body["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
            assert "data" not in body
            for row in rows:
                assert row["node"]["creditCode"] not in r.text and row["node"]["name"] not in r.text


def test_no_signing_key_refuses_without_data_and_the_refusal_is_audited(
    demo_env: Any, tokens: dict[str, str]
) -> None:
    """Nothing unsigned leaves, and the refused request still has its event (every request on
    every tier is audited), naming the caller and the code."""
    from sqlalchemy import select

    from gateway.app import build_state
    from gateway.audit.models import AuditEvent

    settings = replace(demo_env.settings, audit_store="chain")
    state = build_state(settings)

    def no_key() -> Any:
        raise RuntimeError("key store unreadable")

    state.signer.current = no_key  # type: ignore[method-assign]
    query = "{ enterpriseRegistration(first: 3) { edges { node { creditCode name } } } }"
    before, _ = _events(settings.database_url)
    with TestClient(create_app(settings, state=state)) as c:
        share = gql(c, "share", query, token=tokens["samr"])
        signed_open = c.post("/open/graphql", json={"query": query}, headers={"Accept-Signature": "sig1=()"})
        plain_open = gql(c, "open", query)
    for r in (share, signed_open):
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        (error,) = r.json()["errors"]
        assert error["extensions"] == {"code": "SIGNING_UNAVAILABLE"} and "data" not in r.json()
        assert "signature" not in r.headers
    assert plain_open.status_code == 200  # unsigned by choice: served as usual
    after, report = _events(settings.database_url)
    assert after - before == 3 and report.ok, report

    async def newest() -> list[Any]:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                q = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(3)  # type: ignore[attr-defined]
                return list((await conn.execute(q)).mappings())
        finally:
            await engine.dispose()

    plain, opened, shared = asyncio.run(newest())
    assert shared["tier"] == "share" and shared["status"] == 503 and shared["consumer"] == "samr"
    assert opened["tier"] == "open" and opened["status"] == 503
    for refused in (shared, opened):
        assert "SIGNING_UNAVAILABLE" in refused["error_codes"] and refused["row_count"] is None
        assert refused["signature_kid"] is None
    # the refusal names the request it was, so a caller can quote it to the officers
    assert share.headers["x-request-id"] == shared["request_id"]
    assert signed_open.headers["x-request-id"] == opened["request_id"]
    assert plain["status"] == 200
