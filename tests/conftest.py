"""Shared fixtures: a demo database on each backend (SQLite and PostgreSQL), and an app on it.

PostgreSQL is not optional: if it is unreachable the PostgreSQL-backed tests fail loudly.
Set SHUQIAO_TEST_POSTGRES_URL to point elsewhere than 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import Settings, normalise_database_url

PG_ADMIN_URL = os.environ.get("SHUQIAO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgres")


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(backend: str, tmp: Path) -> tuple[str, Any]:
    """A new empty database; returns (url, dropper)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'shuqiao.db'}", lambda: None
    name = f"shuqiao_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as err:
        pytest.fail(
            f"PostgreSQL is required for the integration suite and is unreachable at {PG_ADMIN_URL}: {err}",
            pytrace=False,
        )
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return normalise_database_url(f"{base}/{name}"), lambda: asyncio.run(
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


def settings_for(url: str, var_dir: Path) -> Settings:
    return Settings(
        database_url=url,
        var_dir=var_dir,
        master_key_file=var_dir / "master.key",
        issuer="http://testserver",
        catalogue_poll_seconds=0.0,
        # The session's TestClient is one address for the whole suite, whose tests refuse many
        # credentials on purpose; the failure limit itself is tested on apps of its own.
        auth_failure_rate="100000/minute",
    )


@dataclass
class DemoEnv:
    backend: str
    settings: Settings
    credentials: dict[str, Any]


def init_store(settings: Settings) -> None:
    from gateway.db import upgrade
    from gateway.identity.tokens import load_signing_key
    from gateway.secrets import load_master_key

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    load_master_key(settings.master_key_file, create=True)
    load_signing_key(settings.var_dir / "keys" / "token-es256.pem", create=True)
    upgrade(settings.database_url)


def load_demo_env(settings: Settings) -> dict[str, Any]:
    from gateway.crypto.demo import setup_demo_keys
    from gateway.db import create_engine
    from gateway.demo.load import load_demo
    from gateway.demo.principals import setup_principals
    from gateway.secrets import SecretHasher, load_master_key

    async def go() -> dict[str, Any]:
        engine = create_engine(settings.database_url)
        try:
            master_key = load_master_key(settings.master_key_file)
            await load_demo(engine, size="small", progress=False, master_key=master_key)
            hasher = SecretHasher(master_key)
            creds = await setup_principals(engine, hasher, settings.var_dir / "demo-credentials.json")
            await setup_demo_keys(engine, settings.var_dir)  # hrss's SM2 key, as `demo init` does
            return creds
        finally:
            await engine.dispose()

    return asyncio.run(go())


def fresh_demo_env(backend: str, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[DemoEnv]:
    """A demo store of its own on `backend`, dropped afterwards: `yield from` it in a fixture, for
    the session's or for a module whose tests change the store in ways others must not see (a
    prune of the audit chain, say)."""
    tmp = tmp_path_factory.mktemp(f"{name}-{backend}")
    url, drop = create_database(backend, tmp)
    settings = settings_for(url, tmp / "var")
    init_store(settings)
    try:
        yield DemoEnv(backend, settings, load_demo_env(settings))
    finally:
        drop()


@pytest.fixture(scope="session", params=BACKENDS)
def demo_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnv]:
    yield from fresh_demo_env(request.param, tmp_path_factory, "demo")


@pytest.fixture(scope="session")
def client(demo_env: DemoEnv) -> Iterator[Any]:
    """The session's app on the demo store. Its anonymous allowance is generous: every test of the
    session calls from one address, so 60 a minute would make a test's outcome depend on what ran
    before it. Tests of the anonymous limit build an app with their own rate."""
    from starlette.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(replace(demo_env.settings, anonymous_rate="100000/minute"))) as c:
        yield c


@pytest.fixture(scope="session")
def tokens(client: Any, demo_env: DemoEnv) -> dict[str, str]:
    """A share:read access token per demo department, obtained through the token endpoint."""
    out = {}
    for dept, c in demo_env.credentials["clients"].items():
        r = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(c["client_id"], c["client_secret"]),
        )
        assert r.status_code == 200, r.text
        out[dept] = r.json()["access_token"]
    return out


def gql(
    client: Any,
    tier: str,
    query: str,
    *,
    token: str | None = None,
    variables: dict | None = None,
    headers: dict[str, str] | None = None,
    accept: str = "application/graphql-response+json",
) -> Any:
    h = {"Accept": accept, **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    return client.post(f"/{tier}/graphql", json={"query": query, "variables": variables}, headers=h)


@pytest.fixture(scope="module")
def browser(served: str) -> Iterator[Any]:
    """Chromium for a page-test module, launched after (and closed before) the module's own
    `served` gateway (tests/browser.py)."""
    from tests.browser import chromium

    with chromium() as launched:
        yield launched
