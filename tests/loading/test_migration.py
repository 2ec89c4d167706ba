"""Migration 0026 (snapshot sources; a 信息项's enumeration and maximum length) on SQLite and
PostgreSQL: the columns it adds are the models' (nothing for autogenerate to add), and it goes
down and up again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

MINE = {
    ("dataset_status", "source_snapshot"),
    ("dataset_field", "allowed_values"),
    ("dataset_field", "max_length"),
}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0026_matches_the_models_and_goes_both_ways(backend: str, tmp_path: Any) -> None:
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
    before = ScriptDirectory.from_config(alembic_config(url)).get_revision("0026").down_revision

    async def inspect_db() -> tuple[set[tuple[str, str]], list[Any]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:

                def look(c: Any) -> tuple[set[tuple[str, str]], list[Any]]:
                    ctx = MigrationContext.configure(c, opts={"compare_type": True})
                    names = {name for _, name in MINE}
                    diff = [
                        d for d in compare_metadata(ctx, SQLModel.metadata) if any(n in str(d) for n in names)
                    ]
                    have = {
                        (table, col["name"])
                        for table in ("dataset_status", "dataset_field")
                        for col in inspect(c).get_columns(table)
                    }
                    return have & MINE, diff

                return await conn.run_sync(look)
        finally:
            await engine.dispose()

    try:
        upgrade(url)
        columns, diff = asyncio.run(inspect_db())
        assert columns == MINE and diff == []
        command.downgrade(alembic_config(url), before)
        columns, _ = asyncio.run(inspect_db())
        assert columns == set()
        upgrade(url)
        columns, diff = asyncio.run(inspect_db())
        assert columns == MINE and diff == []
    finally:
        drop()
