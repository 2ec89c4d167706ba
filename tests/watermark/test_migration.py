"""Migrations 0019 (watermark keys, the per-field watermark columns) and 0023 (the text scheme) on
SQLite and PostgreSQL: the tables they make are the models' (nothing for autogenerate to add),
and they go down and up again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

MINE = ("watermark_key", "dataset_field.watermark")
COLUMNS = ("watermark_tolerance", "watermark_text", "decision_relevant")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0019_matches_the_models_and_goes_both_ways(backend: str, tmp_path: Any) -> None:
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
    before = ScriptDirectory.from_config(alembic_config(url)).get_revision("0019").down_revision

    async def inspect_db() -> tuple[set[str], list[Any]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:

                def look(c: Any) -> tuple[set[str], list[Any]]:
                    ctx = MigrationContext.configure(c, opts={"compare_type": True})
                    diff = [
                        d
                        for d in compare_metadata(ctx, SQLModel.metadata)
                        if any(t in str(d) for t in (*MINE, *COLUMNS))
                    ]
                    columns = {col["name"] for col in inspect(c).get_columns("dataset_field")}
                    names = set(inspect(c).get_table_names())
                    if set(COLUMNS) <= columns:
                        names.add("dataset_field.watermark")
                    return names, diff

                return await conn.run_sync(look)
        finally:
            await engine.dispose()

    try:
        upgrade(url)
        tables, diff = asyncio.run(inspect_db())
        assert set(MINE) <= tables and diff == []
        command.downgrade(alembic_config(url), before)
        tables, _ = asyncio.run(inspect_db())
        assert not set(MINE) & tables
        upgrade(url)
        tables, diff = asyncio.run(inspect_db())
        assert set(MINE) <= tables and diff == []
    finally:
        drop()
