"""Start-up says what would otherwise show only under load: more pooled connections than
PostgreSQL accepts."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.audit.chain_helpers import run_with_engine


async def _usable(engine: Any) -> int:
    async with engine.connect() as conn:
        limit = (await conn.exec_driver_sql("SHOW max_connections")).scalar_one()
        reserved = (await conn.exec_driver_sql("SHOW superuser_reserved_connections")).scalar_one()
    return int(limit) - int(reserved)


def _started(settings: Any, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shuqiao"), TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200  # a warning, not a refusal to start
    return [m for m in caplog.messages if "max_connections" in m]


def test_a_pool_postgresql_cannot_serve_is_reported_at_start(
    demo_env: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres = demo_env.backend == "postgres"
    usable = run_with_engine(demo_env.settings.database_url, _usable) if postgres else 100
    half = usable // 2 + 1  # fits once, not twice
    for pool_size, workers, warned in ((half, "1", False), (half, "2", True), (half, "bogus", False)):
        monkeypatch.setenv("WEB_CONCURRENCY", workers)
        said = _started(replace(demo_env.settings, db_pool_size=pool_size), caplog)
        assert bool(said) == (warned and postgres), (workers, said)
        if said:
            assert f"SHUQIAO_DB_POOL_SIZE={half} x 2 worker(s) = {2 * half} connections" in said[0]
            assert f"PostgreSQL accepts {usable}" in said[0]
