"""A plain SQLAlchemy appender for tests of components that read the chain (checkpoints, alerts,
retention): the same rows, hashes and head as `ChainedAuditLog`, one transaction per call, so
these tests do not depend on the writer's batching internals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.access_log import AccessEvent
from gateway.audit.chain import GENESIS_HASH, event_hash
from gateway.audit.field_index import field_access_rows
from gateway.audit.models import HEAD_ID, AuditChainHead, AuditEvent, AuditFieldAccess
from gateway.audit.store import event_row
from gateway.db import create_engine
from tests.audit.legacy_index import LEGACY_ACCESS, legacy_rows

EVENTS, HEAD, FIELD_ACCESS = AuditEvent.__table__, AuditChainHead.__table__, AuditFieldAccess.__table__


async def append(engine: AsyncEngine, events: list[AccessEvent], *, legacy_index: bool = False) -> None:
    """Append `events` and their index rows in the same transaction (as revisions before 0010
    did); `legacy_index`: in the shape of the index before migration 0029."""
    async with engine.begin() as conn:
        head = (await conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID))).first()
        if head is None:
            await conn.execute(insert(HEAD).values(id=HEAD_ID, seq=0, hash=GENESIS_HASH))
            seq, prev = 0, GENESIS_HASH
        else:
            seq, prev = int(head.seq), str(head.hash)
        for event in events:
            seq += 1
            row = event_row(event, datetime.now(UTC))
            row["seq"], row["prev_hash"] = seq, prev
            row["hash"] = prev = event_hash(row)
            await conn.execute(insert(EVENTS), [row])
            if legacy_index:
                if old := legacy_rows(seq, event):
                    await conn.execute(insert(LEGACY_ACCESS), old)
            elif access := field_access_rows(seq, event):
                await conn.execute(insert(FIELD_ACCESS), access)
        await conn.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(seq=seq, hash=prev))


async def reset_alerts(engine: AsyncEngine) -> None:
    """No alerts, no address history, the evaluator's cursor at the start of the chain."""
    from gateway.audit.alerts import ADDRESSES, ALERTS, CURSOR

    async with engine.begin() as conn:
        await conn.execute(delete(ALERTS))
        await conn.execute(delete(ADDRESSES))
        await conn.execute(update(CURSOR).values(seq=0))


def run_with_engine(url: str, job: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
    """asyncio.run(job(engine)) on a fresh engine for `url`, disposed afterwards."""

    async def go() -> Any:
        engine = create_engine(url)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@contextlib.contextmanager
def out_of_hours_evaluation(client: Any, url: str) -> Iterator[None]:
    """Run the block with the gateway's own alert evaluator paused, then evaluate the new events
    with no working days (every L4 access out of hours). Unpaused, the gateway's evaluator, with
    the real working hours, could judge them first: in Shanghai's working hours it raises no
    alert and moves the cursor past them."""
    from gateway.audit.alerts import AlertEngine, AlertRules, AlertTask

    evaluator = next(t for t in client.app.state.audit_tasks if isinstance(t, AlertTask))
    client.portal.call(evaluator.stop)
    try:
        yield
        never = AlertRules(work_days=frozenset())
        run_with_engine(url, lambda engine: AlertEngine(engine, never).run_until_caught_up())
    finally:
        client.portal.call(evaluator.start)
