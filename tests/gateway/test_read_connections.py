"""gateway.read_connections: the GraphQL tiers' reads keep a few pool connections (PostgreSQL) and
give back any that a failed read may have left broken; SQLite reads as before."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Select, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db import create_engine
from gateway.read_connections import ReadConnections
from resolvers.sql import DriverConnection, fetch_all
from tests.conftest import DemoEnv


def one() -> Select:
    # a new statement per backend: compiled SQL is memoised per statement
    return select(literal(1).label("one"))


def test_reads_keep_connections_and_give_back_broken_ones(demo_env: DemoEnv) -> None:
    async def go() -> None:
        engine = create_engine(demo_env.settings.database_url, pool_size=4)
        reads = ReadConnections(engine, hold=1)
        try:
            async with reads.connect() as first:
                assert (await fetch_all(first, one()))[0][0] == 1
            if demo_env.backend == "sqlite":
                assert isinstance(first, AsyncConnection)  # SQLite: engine.connect() per request
                assert engine.pool.checkedout() == 0
                return
            assert isinstance(first, DriverConnection)
            assert engine.pool.checkedout() == 1  # kept between requests
            async with reads.connect() as again:
                assert again is first  # the kept one, no pool checkout
                # one kept already lent and `hold` reached: the next request uses the pool as before
                async with reads.connect() as other:
                    assert isinstance(other, AsyncConnection)
                    assert (await fetch_all(other, one()))[0][0] == 1
                    assert engine.pool.checkedout() == 2
            assert engine.pool.checkedout() == 1

            # a failed read hands its connection back to the pool instead of keeping it
            with pytest.raises(ZeroDivisionError):
                async with reads.connect() as conn:
                    assert conn is first
                    raise ZeroDivisionError
            assert engine.pool.checkedout() == 0
            async with reads.connect() as fresh:
                assert isinstance(fresh, DriverConnection) and fresh is not first
            assert engine.pool.checkedout() == 1

            # its socket gone while kept: discarded, never lent
            await fresh.driver.close()
            async with reads.connect() as replaced:
                assert isinstance(replaced, DriverConnection) and replaced is not fresh
                assert not replaced.driver.is_closed()
            assert engine.pool.checkedout() == 1
            fresh = replaced

            # idle too long: back to the pool before use, a fresh checkout instead
            reads.IDLE_RECYCLE = 0.0
            await asyncio.sleep(0.01)
            async with reads.connect() as recycled:
                assert recycled is not fresh
            assert engine.pool.checkedout() == 1

            await reads.aclose()  # at shutdown: every kept one back to the pool
            assert engine.pool.checkedout() == 0
            async with reads.connect() as after:
                assert isinstance(after, AsyncConnection)  # closed: nothing is kept any more
            assert engine.pool.checkedout() == 0
        finally:
            await reads.aclose()
            await engine.dispose()

    asyncio.run(go())
