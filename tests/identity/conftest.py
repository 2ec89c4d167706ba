"""Identity fixtures: a gateway served by uvicorn in its own process (so Authlib's httpx
client talks real HTTP), and direct access to the store for setting up principals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import ROOT, free_port, on_db, serve

__all__ = ["ROOT", "free_port", "hasher", "on_db", "serve"]


def hasher(demo_env: Any) -> Any:
    from gateway.secrets import SecretHasher, load_master_key

    return SecretHasher(load_master_key(demo_env.settings.master_key_file))


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base
