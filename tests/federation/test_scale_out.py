"""Scale-out: one node as two worker processes over one store (PostgreSQL or SQLite) and one
Redis, behind the router (some subgraphs on each worker). Loaded at once through the router,
they keep one exact audit chain (every subgraph request of every routed query recorded once)
and one rate limit per client across both workers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.audit import verify_chain
from gateway.audit.models import AuditEvent
from tests.conftest import DemoEnv
from tests.federation.conftest import ISSUER, compose_for, router
from tests.support import on_db, serve

pytestmark = pytest.mark.slow
EVENTS = AuditEvent.__table__
JOIN = """query($c: String!) { legalEntity(creditCode: $c) { creditCode
  enterpriseRegistration { name } taxCreditRating { rating } dischargePermit { permitNumber } } }"""
ROUTED = 20  # queries, each one subgraph request to samr and eco (worker a) and tax (worker b)
LIMIT = 3 * ROUTED  # samr's client: exactly the routed queries' subgraph requests fit


def test_two_workers_behind_the_router_share_one_chain_and_one_limit(
    demo_env: DemoEnv, tokens: dict[str, str], node_modules: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    env = {
        "SHUQIAO_AUDIT_STORE": "chain",
        "SHUQIAO_REDIS_URL": "redis://127.0.0.1:6379/0",
        "SHUQIAO_REDIS_NAMESPACE": f"shuqiao-fed-{tag}",
        "SHUQIAO_SHARE_CLIENT_RATE": f"{LIMIT}/minute",
    }
    with serve(demo_env, issuer=ISSUER, **env) as a, serve(demo_env, issuer=ISSUER, **env) as b:
        urls = {d: f"{b}/share/subgraphs/{d}/graphql" for d in ("tax", "hrss", "police")}
        # composing reads _service with hrss's token: samr's budget is untouched
        composed = compose_for(node_modules, a, tokens["hrss"], urls)
        with router(composed["supergraphSdl"], tmp_path) as url:
            code = httpx.post(
                f"{a}/share/graphql",
                json={"query": "{ dischargePermit(first: 1) { edges { node { creditCode } } } }"},
                headers={"Authorization": f"Bearer {tokens['hrss']}"},
                timeout=30,
            ).json()["data"]["dischargePermit"]["edges"][0]["node"]["creditCode"]

            async def load() -> list[dict[str, Any]]:
                async with httpx.AsyncClient(timeout=60) as http:

                    async def one(i: int) -> dict[str, Any]:
                        r = await http.post(
                            url,
                            json={"query": JOIN, "variables": {"c": code}},
                            headers={
                                "Authorization": f"Bearer {tokens['samr']}",
                                "X-Request-ID": f"fed-{tag}-{i}",
                            },
                        )
                        return dict(r.json())

                    return list(await asyncio.gather(*(one(i) for i in range(ROUTED))))

            answers = asyncio.run(load())
            over = httpx.post(
                url,
                json={"query": JOIN, "variables": {"c": code}},
                headers={"Authorization": f"Bearer {tokens['samr']}", "X-Request-ID": f"over-{tag}"},
                timeout=60,
            ).json()

    for body in answers:
        assert "errors" not in body, body
        entity = body["data"]["legalEntity"]
        assert entity["enterpriseRegistration"] and entity["dischargePermit"] is not None
    # past the client's budget, counted over both workers: worker b had seen only ROUTED of them
    refused = {e.get("extensions", {}).get("response", {}).get("status") for e in over["errors"]}
    assert refused == {429}, over

    async def stored(engine: Any) -> tuple[list[tuple[str, str]], Any]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(EVENTS.c.request_id, EVENTS.c.principal_id).where(
                    EVENTS.c.request_id.like(f"fed-{tag}-%")
                )
            )
            return [(r[0], r[1]) for r in rows], await verify_chain(engine)

    events, report = on_db(demo_env, stored)
    assert report.ok, report
    per_query = Counter(rid for rid, _ in events)
    assert per_query == Counter({f"fed-{tag}-{i}": 3 for i in range(ROUTED)})  # no event lost or doubled
    assert {principal for _, principal in events} == {"demo-samr"}
