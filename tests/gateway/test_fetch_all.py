"""resolvers.sql.fetch_all: a statement's SQL is compiled once and remembered, whichever way it is
read (a kept driver connection or an AsyncConnection), and so is "not for the raw path"."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, literal, select

from gateway.db import create_engine
from gateway.settings import normalise_database_url
from resolvers import sql as sql_mod
from resolvers.sql import DriverConnection, fetch_all
from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[Select]:
    seen: list[Select] = []
    real = sql_mod._compile

    def spy(statement: Select, conn: Any) -> Any:
        seen.append(statement)
        return real(statement, conn)

    monkeypatch.setattr(sql_mod, "_compile", spy)
    return seen


def test_sqlite_compiles_once_and_remembers_the_fallback(tmp_path: Path, compiles: list[Select]) -> None:
    async def go() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fetch.db'}")
        try:
            async with engine.connect() as conn:
                plain = select(literal(7).label("n"), literal("x").label("s"))
                assert [tuple(r) for r in await fetch_all(conn, plain)] == [(7, "x")]
                assert [tuple(r) for r in await fetch_all(conn, plain)] == [(7, "x")]
                assert compiles == [plain]
                assert sql_mod._compiled[plain] is not None

                # a bool parameter needs SQLAlchemy's bind processing: the raw path is refused
                # once, remembered, and the answer comes through SQLAlchemy both times
                flagged = select(literal(True).label("b"))
                assert [tuple(r) for r in await fetch_all(conn, flagged)] == [(True,)]
                assert [tuple(r) for r in await fetch_all(conn, flagged)] == [(True,)]
                assert compiles == [plain, flagged]
                assert sql_mod._compiled[flagged] is None
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_postgres_compiles_once_for_both_kinds_of_connection(compiles: list[Select]) -> None:
    async def go() -> None:
        engine = create_engine(normalise_database_url(PG_ADMIN_URL))
        try:
            async with engine.connect() as conn:
                stmt = select(literal(7).label("n"), literal(True).label("b"))
                assert [tuple(r) for r in await fetch_all(conn, stmt)] == [(7, True)]
                raw = (await conn.get_raw_connection()).driver_connection
                kept = DriverConnection(dialect=conn.dialect, driver=raw)
                assert [tuple(r) for r in await fetch_all(kept, stmt)] == [(7, True)]
                assert [tuple(r) for r in await fetch_all(kept, stmt)] == [(7, True)]
                assert compiles == [stmt]

                fresh = select(literal(8).label("n"))
                assert [tuple(r) for r in await fetch_all(kept, fresh)] == [(8,)]
                assert [tuple(r) for r in await fetch_all(conn, fresh)] == [(8,)]
                assert compiles == [stmt, fresh]
        finally:
            await engine.dispose()

    asyncio.run(go())
