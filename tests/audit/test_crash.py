"""SIGKILL mid-load, then restart: every request that received data has its event, and the
chain verifies (group commit acknowledges a request only after its batch is durable)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.audit import verify_chain
from gateway.audit.models import AuditEvent
from gateway.db import create_engine
from tests.audit.test_audit_page_browser import _token
from tests.support import child_pids, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _serve(demo_env: Any, port: int) -> subprocess.Popen[bytes]:
    s = demo_env.settings
    env = {
        **os.environ,
        "SHUQIAO_DATABASE_URL": s.database_url,
        "SHUQIAO_VAR_DIR": str(s.var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(s.master_key_file),
        "SHUQIAO_ISSUER": f"http://127.0.0.1:{port}",
        "SHUQIAO_AUDIT_STORE": "chain",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "asgi:app", "--port", str(port), "--log-level", "critical"],
        cwd=ROOT,
        env=env,
    )
    for _ in range(150):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("the gateway did not become ready")


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_under_load_loses_no_answered_request(demo_env: Any) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(demo_env, port)
    answered: list[str] = []
    stop = threading.Event()
    try:
        creds = demo_env.credentials["clients"]["hrss"]
        token = _token(base, creds["client_id"], creds["client_secret"])
        tag = uuid.uuid4().hex[:8]

        async def load() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=5) as c:

                async def worker(w: int) -> None:
                    i = 0
                    while not stop.is_set():
                        rid = f"kill-{tag}-{w}-{i}"
                        i += 1
                        try:
                            r = await c.post(
                                "/share/graphql",
                                headers={"Authorization": f"Bearer {token}", "X-Request-ID": rid},
                                json={"query": "{ population(first: 5) { edges { node { name } } } }"},
                            )
                        except httpx.HTTPError:
                            continue  # the server died under this request: it got no data
                        if r.status_code == 200 and r.json().get("data", {}).get("population"):
                            answered.append(rid)

                await asyncio.gather(*(worker(w) for w in range(16)))

        loader = threading.Thread(target=lambda: asyncio.run(load()))
        loader.start()
        deadline = time.time() + 20
        while len(answered) < 150 and time.time() < deadline:
            time.sleep(0.05)
        writers = child_pids(proc.pid)  # SQLite: the audit writer's process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        loader.join(30)
        assert len(answered) >= 150
        # Orphaned, it sees the gateway's end of its socket close and exits.
        deadline = time.time() + 10
        while any(_alive(w) for w in writers) and time.time() < deadline:
            time.sleep(0.05)
        assert not [w for w in writers if _alive(w)]
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    # restart on the same store: it must come up, and the log must hold every answered request
    proc = _serve(demo_env, port)
    try:

        async def check() -> tuple[set[str], Any]:
            engine = create_engine(demo_env.settings.database_url)
            try:
                async with engine.connect() as conn:
                    ids = set(
                        (
                            await conn.execute(
                                select(AuditEvent.__table__.c.request_id).where(
                                    AuditEvent.__table__.c.request_id.like(f"kill-{tag}-%")
                                )
                            )
                        ).scalars()
                    )
                return ids, await verify_chain(engine)
            finally:
                await engine.dispose()

        ids, report = asyncio.run(check())
    finally:
        proc.terminate()
        proc.wait(10)
    missing = set(answered) - ids
    assert not missing, f"{len(missing)} answered requests have no event, e.g. {sorted(missing)[:3]}"
    assert report.ok, report
