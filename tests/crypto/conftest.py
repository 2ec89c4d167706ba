"""Fixtures for the gateway's cryptography: the demo department key of hrss on each backend."""

from __future__ import annotations

from typing import TypeVar

import pytest

from tests.conftest import DemoEnv
from tests.support import on_db

__all__ = ["on_db"]

T = TypeVar("T")


@pytest.fixture(scope="session")
def hrss_key(demo_env: DemoEnv) -> dict[str, str]:
    """hrss's demo key pair, registered (idempotent: the demo setup may already have done it)."""
    from gateway.crypto.demo import setup_demo_keys

    return on_db(demo_env, lambda e: setup_demo_keys(e, demo_env.settings.var_dir))["hrss"]
