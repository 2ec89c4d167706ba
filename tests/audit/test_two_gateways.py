"""Two gateway processes on one store (as two workers), loaded concurrently, make one exact chain:
every answered request has exactly one event and the chain verifies. On SQLite each gateway appends
through its own writer process, which must relink a batch whenever the other one appended first."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.audit import verify_chain
from gateway.audit.models import AuditEvent
from tests.audit.test_audit_page_browser import _token
from tests.support import on_db, serve

pytestmark = pytest.mark.slow
EVENTS = AuditEvent.__table__
QUERY = {"query": "{ population(first: 3) { edges { node { name } } } }"}


def test_two_gateways_loaded_at_once_make_one_exact_chain(demo_env: Any) -> None:
    creds = demo_env.credentials["clients"]["hrss"]
    tag = uuid.uuid4().hex[:8]
    with serve(demo_env, SHUQIAO_AUDIT_STORE="chain") as a, serve(demo_env, SHUQIAO_AUDIT_STORE="chain") as b:
        tokens = {base: _token(base, creds["client_id"], creds["client_secret"]) for base in (a, b)}

        async def load() -> list[str]:
            async with httpx.AsyncClient(timeout=30) as client:

                async def one(i: int) -> str | None:
                    base = (a, b)[i % 2]
                    rid = f"two-{tag}-{i}"
                    r = await client.post(
                        f"{base}/share/graphql",
                        json=QUERY,
                        headers={"Authorization": f"Bearer {tokens[base]}", "X-Request-ID": rid},
                    )
                    return rid if r.status_code == 200 and r.json()["data"]["population"] else None

                return [rid for rid in await asyncio.gather(*(one(i) for i in range(240))) if rid]

        answered = asyncio.run(load())

    async def stored(engine: Any) -> tuple[list[str], Any]:
        async with engine.connect() as conn:
            ids = (
                await conn.execute(
                    select(EVENTS.c.request_id)
                    .where(EVENTS.c.request_id.like(f"two-{tag}-%"))
                    .order_by(EVENTS.c.seq)
                )
            ).scalars()
            return list(ids), await verify_chain(engine)

    ids, report = on_db(demo_env, stored)
    assert len(answered) == 240
    assert Counter(ids) == Counter(answered)  # each exactly once, nothing else under this tag
    assert report.ok, report
    # the two gateways' batches interleave in the chain (so each had to link after the other's)
    gateway_of = [int(rid.rsplit("-", 1)[1]) % 2 for rid in ids]
    assert sum(x != y for x, y in itertools.pairwise(gateway_of)) >= 4
