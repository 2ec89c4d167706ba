"""Fixtures for the gateway's cryptography: the demo department key of hrss on each backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from tests.conftest import DemoEnv

T = TypeVar("T")


def on_db(demo_env: DemoEnv, job: Callable[[Any], Awaitable[T]]) -> T:
    """Run one async job against the demo database with its own engine."""
    from gateway.db import create_engine

    async def go() -> T:
        engine = create_engine(demo_env.settings.database_url)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture(scope="session")
def hrss_key(demo_env: DemoEnv) -> dict[str, str]:
    """hrss's demo key pair, registered (idempotent: the demo setup may already have done it)."""
    from gateway.crypto.demo import setup_demo_keys

    return on_db(demo_env, lambda e: setup_demo_keys(e, demo_env.settings.var_dir))["hrss"]
