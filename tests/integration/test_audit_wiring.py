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
