"""Migration 0015 both ways on SQLite and PostgreSQL, a grant row kept across the batch copy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic import command


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0015_goes_both_ways(backend: str, tmp_path: Any) -> None:
    from sqlalchemy import inspect, text

    from gateway.db import alembic_config, create_engine, upgrade
    from tests.conftest import create_database
    from tests.integration.test_grants import SEED_0011

    url, drop = create_database(backend, tmp_path)

    async def run(job: Any) -> Any:
        engine = create_engine(url)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    async def seed(e: Any) -> None:
        async with e.begin() as conn:
            for sql in SEED_0011:
                await conn.execute(text(sql.replace("NOW", "2026-12-01 00:00:00")))

    async def shape(e: Any) -> tuple[set[str], set[str], list[Any]]:
        async with e.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            cols = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("grant")})
            rows = (await conn.execute(text('SELECT consumer, fields FROM "grant"'))).all()
            return tables, cols, [tuple(r) for r in rows]

    try:
        upgrade(url, "0012")
        asyncio.run(run(seed))
        upgrade(url, "0015")
        tables, cols, rows = asyncio.run(run(shape))
        assert {"application", "application_event"} <= tables and "application_id" in cols
        assert rows == [("c", "a b")]
        command.downgrade(alembic_config(url), "0012")
        tables, cols, rows = asyncio.run(run(shape))
        assert "application" not in tables and "application_id" not in cols and rows == [("c", "a b")]
    finally:
        drop()
