"""The migrations at head build exactly the models' tables on SQLite and PostgreSQL (nothing for
autogenerate to add or change), and every one of them goes down and up again to the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_head_matches_the_models_and_every_migration_goes_both_ways(backend: str, tmp_path: Any) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlmodel import SQLModel

    import gateway.models  # noqa: F401  (every table on the metadata)
    from gateway.audit.partitions import include_name  # audit_event's partitions: not model tables
    from gateway.db import alembic_config, create_engine, upgrade
    from tests.conftest import create_database

    url, drop = create_database(backend, tmp_path)
    script = ScriptDirectory.from_config(alembic_config(url))
    assert len(script.get_heads()) == 1  # one line of history: a second head is a merge left undone

    async def differences() -> list[Any]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:

                def look(c: Any) -> list[Any]:
                    ctx = MigrationContext.configure(
                        c, opts={"compare_type": True, "include_name": include_name}
                    )
                    return list(compare_metadata(ctx, SQLModel.metadata))

                return await conn.run_sync(look)
        finally:
            await engine.dispose()

    try:
        upgrade(url)
        assert asyncio.run(differences()) == []
        command.downgrade(alembic_config(url), "base")
        gone = {d[1].name for d in asyncio.run(differences()) if isinstance(d, tuple) and d[0] == "add_table"}
        assert gone == set(SQLModel.metadata.tables)  # down to nothing: every table is to be made again
        upgrade(url)
        assert asyncio.run(differences()) == []
    finally:
        drop()
