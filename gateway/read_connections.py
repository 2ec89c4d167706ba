"""The connection each GraphQL request reads through (resolvers.execute.run).

On PostgreSQL (asyncpg) the executor's statements already run on the driver's connection
(resolvers.sql.fetch_all); what was left of SQLAlchemy per request was the pool checkout and
checkin around them: an `AsyncConnection`, a greenlet hop in and out, the pool's events and
reset — ~4 % of an open-tier lookup's CPU. Here a few connections taken from the engine's pool
are kept between requests (as the audit writer keeps its own, gateway.audit.store), and a
request borrows one as a plain asyncpg connection: no greenlet, no SQLAlchemy on the way.

- At most `hold` are kept (the gateway: half of what the audit writer leaves of the pool), so the
  rest of the gateway (identity, registry) always finds connections in the pool; a request that
  finds none of the kept ones idle and `hold` already reached checks one out of the pool as before.
- A read that raises (a statement error, a dropped connection, a cancelled request) closes its
  connection for good (the pool opens a fresh one when next asked) instead of keeping it.
- A kept connection idle for `IDLE_RECYCLE` seconds goes back to the pool before use (the
  server may have closed it), as the audit writer's does.
- SQLite (and any other driver) reads through `engine.connect()` per request, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from resolvers.sql import DriverConnection


class ReadConnections:
    IDLE_RECYCLE = 30.0  # seconds, as the audit writer's (gateway.audit.store)

    def __init__(self, engine: AsyncEngine, hold: int) -> None:
        self._engine = engine
        dialect = engine.dialect
        raw = dialect.name == "postgresql" and dialect.driver == "asyncpg"
        self._hold = max(0, hold) if raw else 0
        self._idle: list[tuple[AsyncConnection, DriverConnection, float]] = []  # last used: loop time
        self._held = 0  # checked out of the engine's pool and kept (idle or lent)
        self._closed = False

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection | DriverConnection]:
        """A connection for one request's reads."""
        taken = await self._take()
        if taken is None:
            async with self._engine.connect() as conn:
                yield conn
            return
        conn, reader = taken
        try:
            yield reader
        except BaseException:
            await self._give_back(conn, discard=True)
            raise
        if self._closed:
            await self._give_back(conn)
        else:
            self._idle.append((conn, reader, asyncio.get_running_loop().time()))

    async def _take(self) -> tuple[AsyncConnection, DriverConnection] | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn, reader, used = self._idle.pop()
            if reader.driver.is_closed():  # its socket went while it was kept
                await self._give_back(conn, discard=True)
            elif now - used <= self.IDLE_RECYCLE:
                return conn, reader
            else:
                await self._give_back(conn)
        if self._held >= self._hold or self._closed:
            return None
        self._held += 1
        try:
            conn = await self._engine.connect()
        except BaseException:
            self._held -= 1
            raise
        try:
            raw: Any = (await conn.get_raw_connection()).driver_connection
        except BaseException:
            await self._give_back(conn)
            raise
        if raw.is_closed():
            # cut while it sat in the pool (the pool does not ping): this request reads through
            # the pool as before, which hands out or opens another
            await self._give_back(conn, discard=True)
            return None
        return conn, DriverConnection(self._engine.dialect, raw)

    async def _give_back(self, conn: AsyncConnection, *, discard: bool = False) -> None:
        self._held -= 1
        if discard:
            # the read failed or was cancelled: the connection may be cut (a pooled asyncpg
            # connection whose socket died goes back to the pool looking healthy) or mid-statement
            await conn.invalidate()
        await conn.close()

    async def aclose(self) -> None:
        """Hand every kept connection back to the pool (at shutdown, before the engine is disposed);
        ones lent out go back when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _, _ in idle:
            await self._give_back(conn)
