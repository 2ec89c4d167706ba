"""Fixtures for federation: the Node packages (composition, router), one served gateway and
routers in front of it. The Node packages are required: without federation/node_modules these
tests fail (run `make federation` or `npm ci --prefix federation`), they never skip."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DemoEnv
from tests.support import ROOT, free_port, serve

NODE_DIR = ROOT / "federation"
DEPARTMENTS = ("samr", "tax", "eco", "hrss", "police")
# The issuer the session's tokens carry (tests.conftest.settings_for): the served gateway
# must accept the same tokens as the TestClient app.
ISSUER = "http://testserver"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    modules = NODE_DIR / "node_modules"
    if not (modules / "@apollo" / "gateway").is_dir() or not (modules / "@apollo" / "composition").is_dir():
        raise RuntimeError(
            "federation/node_modules is missing: run `make federation` (npm ci --prefix federation)."
        )
    return modules


def compose(node_modules: Path, subgraphs: list[dict[str, str]], out: Path | None = None) -> dict[str, Any]:
    """compose.mjs on [{"name", "url", "sdl"}]: errors, hints, supergraphSdl, apiSchema."""
    done = subprocess.run(
        ["node", str(NODE_DIR / "compose.mjs"), *(["--out", str(out)] if out else [])],
        input=json.dumps(subgraphs).encode(),
        capture_output=True,
        timeout=120,
        cwd=NODE_DIR,
    )
    if not done.stdout:
        raise RuntimeError(done.stderr.decode(errors="replace")[-3000:])
    return json.loads(done.stdout)


def service_sdl(base: str, department: str, token: str) -> str:
    r = httpx.post(
        f"{base}/share/subgraphs/{department}/graphql",
        json={"query": "{ _service { sdl } }"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]["_service"]["sdl"]


def compose_for(
    node_modules: Path, base: str, token: str, urls: dict[str, str] | None = None
) -> dict[str, Any]:
    """The supergraph of the five demo subgraphs as the token's caller sees them."""
    urls = urls or {}
    subgraphs = [
        {
            "name": d,
            "url": urls.get(d, f"{base}/share/subgraphs/{d}/graphql"),
            "sdl": service_sdl(base, d, token),
        }
        for d in DEPARTMENTS
    ]
    return compose(node_modules, subgraphs)


@contextmanager
def router(supergraph_sdl: str, tmp: Path, *args: str) -> Iterator[str]:
    """router.mjs serving `supergraph_sdl`; yields its GraphQL URL."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"supergraph-{port}.graphql"
    path.write_text(supergraph_sdl)
    log = tmp / f"router-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["node", str(NODE_DIR / "router.mjs"), "--supergraph", str(path), "--port", str(port), *args],
            cwd=NODE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_ENV": "production"},
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                break
            try:
                httpx.get(
                    f"{url}?query=%7B__typename%7D", headers={"apollo-require-preflight": "1"}, timeout=1
                )
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        if proc.poll() is not None:
            pytest.fail(f"the router exited:\n{log.read_text()[-3000:]}")
        router.supergraph = path  # type: ignore[attr-defined]
        router.log = log  # type: ignore[attr-defined]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def gateway(demo_env: DemoEnv) -> Iterator[str]:
    """One served gateway (real HTTP) per test module, accepting the session's tokens."""
    with serve(demo_env, issuer=ISSUER) as base:
        yield base


def post(url: str, query: str, token: str | None = None, variables: dict | None = None) -> httpx.Response:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, json={"query": query, "variables": variables}, headers=headers, timeout=60)
