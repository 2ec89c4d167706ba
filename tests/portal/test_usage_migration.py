"""Migration 0021 (usage_daily, usage_rollup_cursor) on SQLite and PostgreSQL: the tables it makes
are the models' (nothing for autogenerate to add), the cursor starts at 0 so the rollup counts the
retained history, and it goes down and up again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

MINE = ("usage_daily", "usage_rollup_cursor")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0021_matches_the_models_and_goes_both_ways(backend: str, tmp_path: Any) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect
    from sqlmodel import SQLModel

    import gateway.models  # noqa: F401  (every table on the metadata)
    from gateway.db import alembic_config, create_engine, upgrade
    from tests.conftest import create_database

    url, drop = create_database(backend, tmp_path)
    before = ScriptDirectory.from_config(alembic_config(url)).get_revision("0021").down_revision

    async def inspect_db() -> tuple[set[str], list[Any], int | None]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:

                def look(c: Any) -> tuple[set[str], list[Any]]:
                    ctx = MigrationContext.configure(c, opts={"compare_type": True})
                    diff = [
                        d for d in compare_metadata(ctx, SQLModel.metadata) if any(t in str(d) for t in MINE)
                    ]
                    return set(inspect(c).get_table_names()), diff

                tables, diff = await conn.run_sync(look)
                cursor = None
                if "usage_rollup_cursor" in tables:
                    cursor = (
                        await conn.execute(text("SELECT seq FROM usage_rollup_cursor WHERE id = 1"))
                    ).scalar()
                return tables, diff, cursor

        finally:
            await engine.dispose()

    try:
        upgrade(url)
        tables, diff, cursor = asyncio.run(inspect_db())
        assert set(MINE) <= tables and diff == [] and cursor == 0
        command.downgrade(alembic_config(url), before)
        tables, _, _ = asyncio.run(inspect_db())
        assert not set(MINE) & tables
        upgrade(url)
        tables, diff, cursor = asyncio.run(inspect_db())
        assert set(MINE) <= tables and diff == [] and cursor == 0
    finally:
        drop()
