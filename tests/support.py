"""Helpers several test packages share: a gateway served by uvicorn in its own process
(so clients talk real HTTP) and one-off async jobs against a demo store."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def child_pids(pid: int) -> list[int]:
    """The live or unreaped children of a process, from /proc."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def fan_out(
    depth: int,
    on: str = "EnterpriseRegistration",
    around: str = "enterpriseRegistration(first: 1) { edges { node { * } } }",
) -> str:
    """`F{i}` spreads `F{i-1}` twice: a kilobyte or two that expands to 2**depth fields,
    spread where `around` has its `*`."""
    frags = [f"fragment F0 on {on} {{ name }}"]
    frags += [f"fragment F{i} on {on} {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, depth + 1)]
    return " ".join(["{ " + around.replace("*", f"...F{depth}") + " }", *frags])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(demo_env: Any, port: int | None = None, issuer: str | None = None, **env: str) -> Iterator[str]:
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    s = demo_env.settings
    full_env = {
        **os.environ,
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
        "SHUQIAO_ISSUER": issuer or base,
        **env,
    }
    # Output to a file, not a pipe: a pipe nobody reads fills at 64 KB and blocks the server.
    output = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "asgi:app", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=full_env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )

    def read_output() -> str:
        output.seek(0)
        return output.read().decode(errors="replace")

    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            proc.terminate()
            proc.wait(timeout=10)
            pytest.fail(f"the gateway did not become ready:\n{read_output()[-3000:]}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        serve.last_output = read_output()  # type: ignore[attr-defined]
        output.close()


def on_db(demo_env: Any, fn: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.db import create_engine

    async def go() -> T:
        engine = create_engine(demo_env.settings.database_url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())
