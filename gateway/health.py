"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("shuqiao")

# A probe gives up after a few seconds; answer before it does rather than after the pool timeout.
READY_TIMEOUT = 3.0


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    state = request.app.state.gateway
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except PoolTimeout:
        # Every pooled connection is in use: up, but not taking more work right now.
        return _unavailable("busy", "1")
    except TimeoutError:
        log.warning("readiness: the database did not answer within %.0f s", READY_TIMEOUT)
        return _unavailable("timeout", "5")
    except Exception as err:  # the detail goes to the log, not to callers
        log.warning("readiness: database unreachable: %s", type(err).__name__)
        return _unavailable("unreachable", "5")
    return JSONResponse({"status": "ready", "database": "ok"})


def _unavailable(database: str, retry_after: str) -> JSONResponse:
    return JSONResponse(
        {"status": "unavailable", "database": database}, status_code=503, headers={"Retry-After": retry_after}
    )
