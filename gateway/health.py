"""Liveness and readiness.

/readyz checks each dependency a request needs and reports each by name: `database`, `redis`
(only when SHUQIAO_REDIS_URL is set), `audit` (the access log's store) and `signing` (the
response-signing key). It answers 200 when all are "ok", else 503 with Retry-After. No detail
of a failure (host, message) is given; the log has its type."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("shuqiao")

# A probe gives up after a few seconds; answer before it does rather than after the pool timeout.
READY_TIMEOUT = 3.0
OK = "ok"


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    state = request.app.state.gateway
    checks: dict[str, str] = {"database": await _database(state)}
    if state.settings.redis_url:
        checks["redis"] = await _redis(state)
    checks["audit"] = _audit(state, checks["database"])
    checks["signing"] = _signing(state)
    if all(v == OK for v in checks.values()):
        return JSONResponse({"status": "ready", **checks})
    # Busy is momentary; anything down takes longer to come back.
    retry = "1" if set(checks.values()) <= {OK, "busy"} else "5"
    return JSONResponse({"status": "unavailable", **checks}, status_code=503, headers={"Retry-After": retry})


async def _database(state: Any) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except PoolTimeout:
        # Every pooled connection is in use: up, but not taking more work right now.
        return "busy"
    except TimeoutError:
        log.warning("readiness: the database did not answer within %.0f s", READY_TIMEOUT)
        return "timeout"
    except Exception as err:  # the detail goes to the log, not to callers
        log.warning("readiness: database unreachable: %s", type(err).__name__)
        return "unreachable"
    return OK


async def _redis(state: Any) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            reachable = await state.identity.limiter.check_store()
    except TimeoutError:
        reachable = False
    if not reachable:
        log.warning("readiness: Redis (rate-limit counters) unreachable")
        return "unreachable"
    return OK


def _audit(state: Any, database: str) -> str:
    """The chained store lives in the database: it is as ready as the database is (busy, down…; a sink may say
    more through a `ready()` method). The logging sink has nothing to be down."""
    ready = getattr(state.access_log, "ready", None)
    if callable(ready):
        return OK if ready() else "unavailable"
    if state.settings.audit_store == "chain":
        return database
    return OK


def _signing(state: Any) -> str:
    try:
        state.signer.current()
    except Exception as err:
        log.warning("readiness: no response-signing key: %s", type(err).__name__)
        return "unavailable"
    return OK
