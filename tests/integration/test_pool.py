"""The database pool under load: a fixed set of connections, no churn, a clear 503 when exhausted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
from sqlalchemy import event, select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.app import create_app
from gateway.audit.models import AuditEvent
from gateway.settings import Settings
from tests.conftest import DemoEnv

PAGE = "{ enterpriseRegistration(first: 50) { edges { node { creditCode name district } } } }"


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app.state.gateway, client


async def bearer(client: httpx.AsyncClient, demo_env: DemoEnv, dept: str) -> dict[str, str]:
    c = demo_env.credentials["clients"][dept]
    r = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c["client_id"], c["client_secret"])
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_concurrent_requests_share_the_fixed_pool_without_opening_more(demo_env: DemoEnv) -> None:
    settings = replace(demo_env.settings, db_pool_size=2)

    async def go() -> tuple[int, int]:
        async with served(settings) as (state, client):
            opened = in_use = peak = 0

            def connected(*_: Any) -> None:
                nonlocal opened
                opened += 1

            def checked_out(*_: Any) -> None:
                nonlocal in_use, peak
                in_use += 1
                peak = max(peak, in_use)

            def checked_in(*_: Any) -> None:
                nonlocal in_use
                in_use -= 1

            headers = await bearer(client, demo_env, "samr")
            in_use = state.engine.pool.checkedout()  # on PostgreSQL, the audit writer's
            pool_events = state.engine.sync_engine
            event.listen(pool_events, "connect", connected)
            event.listen(pool_events, "checkout", checked_out)
            event.listen(pool_events, "checkin", checked_in)
            results = await asyncio.gather(
                *(client.post("/share/graphql", json={"query": PAGE}, headers=headers) for _ in range(40))
            )
            for r in results:
                assert r.status_code == 200, r.text
                assert len(r.json()["data"]["enterpriseRegistration"]["edges"]) == 50
            return opened, peak

    opened, peak = asyncio.run(go())
    # The requests really did compete: both connections were in use at once.
    assert peak >= 2
    # The pool may still be filling up to its size; it never opens a connection beyond it.
    assert opened <= 2


def test_exhausted_pool_answers_503_service_busy_and_graphql_audits_it(demo_env: DemoEnv) -> None:
    settings = replace(demo_env.settings, db_pool_size=2, db_pool_timeout=0.3)

    async def go() -> None:
        async with served(settings) as (state, client):
            headers = await bearer(client, demo_env, "samr")  # the audit writer now holds one
            held: list[AsyncConnection] = []
            try:
                while True:  # take every connection the requests could use
                    held.append(await state.engine.connect())  # the pool's own timeout ends this
            except PoolTimeout:
                pass
            try:
                assert held, "the pool had no free connection to hold"
                r = await client.post("/share/graphql", json={"query": PAGE}, headers=headers)
                c = demo_env.credentials["clients"]["samr"]
                token = await client.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(c["client_id"], c["client_secret"]),
                )
            finally:
                for conn in held:
                    await conn.close()
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1"
            body = r.json()
            assert body["errors"][0]["extensions"]["code"] == "SERVICE_BUSY"
            assert "data" not in body
            # Outside the GraphQL tiers too: the token endpoint's 503 in RFC 6749's format, not a 500.
            assert token.status_code == 503, token.text
            assert token.headers["retry-after"] == "1"
            assert token.json()["error"] == "temporarily_unavailable"
            assert "access_token" not in token.text
            request_id = r.headers["x-request-id"]
            async with state.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(AuditEvent.__table__).where(AuditEvent.__table__.c.request_id == request_id)
                    )
                ).one()
            assert row.status == 503
            assert "SERVICE_BUSY" in row.error_codes
            # Once connections are free again the same request is served.
            r = await client.post("/share/graphql", json={"query": PAGE}, headers=headers)
            assert r.status_code == 200, r.text

    asyncio.run(go())
