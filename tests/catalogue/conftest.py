"""Catalogue-as-code fixtures: a migrated store without the demo, per backend. Tests share a
module's store and keep out of each other's way by department: a file is authoritative only
for the departments it declares."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import BACKENDS, DemoEnv, create_database, init_store, load_demo_env, settings_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "xa_public_toilets.yaml"
DEMO_FILE = ROOT / "gateway" / "demo" / "catalogue.yaml"
T = TypeVar("T")


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnv]:
    tmp = tmp_path_factory.mktemp(f"catalogue-{request.param}")
    url, drop = create_database(request.param, tmp)
    settings = settings_for(url, tmp / "var")
    init_store(settings)
    yield DemoEnv(request.param, settings, {})
    drop()


def fresh_demo(backend: str, tmp: Path) -> tuple[DemoEnv, Callable[[], None]]:
    """A demo store of its own (departments, people, datasets as `demo init` makes them), for
    tests that change a demo department's catalogue: the session's shared store stays as it is."""
    url, drop = create_database(backend, tmp)
    settings = settings_for(url, tmp / "var")
    init_store(settings)
    return DemoEnv(backend, settings, load_demo_env(settings)), drop


def on_store(store: DemoEnv, fn: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.db import create_engine

    async def go() -> T:
        engine = create_engine(store.settings.database_url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def catalogue_file(dept: str, datasets: str, name: str = "测试部门") -> str:
    """A small file for department `dept`; `datasets` is the YAML of its datasets list."""
    return f"departments:\n  - code: {dept}\n    name: {name}\ndatasets:\n{datasets}"


def dataset_yaml(dept: str, code: str, serial: int, fields: str, **extra: str) -> str:
    more = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    return (
        f"  - code: {code}\n"
        f"    resource_code: 610100-{dept.upper()}-{serial:06d}\n"
        f"    name: {code} 数据\n"
        f"    department: {dept}\n"
        "    category: theme\n"
        "    share: unconditional\n"
        "    open: unconditional\n"
        f"{more}"
        "    fields:\n"
        f"{fields}"
    )


def field_yaml(column: str, type_: str = "string", **extra: str) -> str:
    more = "".join(f"        {k}: {v}\n" for k, v in extra.items())
    return f"      - name: {column} 项\n        column: {column}\n        type: {type_}\n{more}"
