"""Audit fixtures: a migrated database per backend (SQLite and PostgreSQL), reset to an empty chain
for each test. PostgreSQL is required: if it is unreachable these tests fail, they do not skip."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from gateway.audit.chain import GENESIS_HASH
from gateway.audit.models import AuditChainHead, AuditEvent, AuditFieldAccess, AuditIndexCursor
from gateway.db import create_engine, upgrade
from keys.keystore import KeyStore

PG_ADMIN_URL = os.environ.get("SHUQIAO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
EVENTS = AuditEvent.__table__
HEAD = AuditChainHead.__table__


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def migrated_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}"
        drop = None
    else:
        name = f"shuqiao_audit_{uuid.uuid4().hex[:12]}"
        try:
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        except Exception as err:  # any failure to reach PostgreSQL fails the suite
            pytest.fail(f"PostgreSQL is required and unreachable at {PG_ADMIN_URL}: {err}", pytrace=False)
        base = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
        url = f"postgresql+asyncpg://{base}/{name}"
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    upgrade(url)
    yield url
    if drop:
        asyncio.run(_pg_admin(drop))


@pytest.fixture
def url(migrated_url: str) -> str:
    """The migrated database with an empty chain (genesis head)."""

    async def reset() -> None:
        engine = create_engine(migrated_url)
        async with engine.begin() as conn:
            await conn.execute(delete(EVENTS))
            await conn.execute(delete(AuditFieldAccess.__table__))
            await conn.execute(update(HEAD).values(seq=0, hash=GENESIS_HASH))
            await conn.execute(update(AuditIndexCursor.__table__).values(seq=0))
        await engine.dispose()

    asyncio.run(reset())
    return migrated_url


@pytest.fixture
def db(url: str) -> str:
    """The empty chain with no checkpoints and no prune anchors either."""
    from gateway.audit.checkpoints import ANCHORS, CHECKPOINTS

    async def clean() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(delete(CHECKPOINTS))
            await conn.execute(delete(ANCHORS))
        await engine.dispose()

    asyncio.run(clean())
    return url


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    """The gateway's signing key store (checkpoints and archives are signed with it)."""
    from gateway.crypto.signing import open_signing_store

    return open_signing_store(tmp_path / "var")
