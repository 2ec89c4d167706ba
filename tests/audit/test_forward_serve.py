"""`serve` with SHUQIAO_AUDIT_SYSLOG_TARGET and SHUQIAO_AUDIT_FORWARD_JSONL: the gateway's own
task feeds Debian's rsyslogd over TLS and a JSON-lines file; the receiver stops, the gateway
stops while it is down, both start again, and every event of the chain reaches both sinks."""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from tests.audit.rfc5424 import parse
from tests.audit.syslog_receiver import Rsyslog
from tests.support import on_db, serve

QUERY = {"query": "{ enterpriseRegistration(first: 1) { totalCount } }"}


def _ask(base: str, n: int) -> None:
    for _ in range(n):
        assert httpx.post(f"{base}/open/graphql", json=QUERY, timeout=10).status_code == 200


def _seqs(demo_env: Any) -> set[int]:
    async def go(engine: Any) -> set[int]:
        async with engine.connect() as conn:
            return {int(s) for s in (await conn.execute(select(AuditEvent.__table__.c.seq))).scalars()}

    return on_db(demo_env, go)


def _syslog_ids(receiver: Rsyslog) -> collections.Counter[str]:
    return collections.Counter(parse(line).param("shuqiao@32473", "id") or "" for line in receiver.lines())


def test_the_gateway_forwards_every_event_across_receiver_and_gateway_restarts(
    demo_env: Any, tmp_path: Path
) -> None:
    receiver = Rsyslog(tmp_path / "rsyslog")
    jsonl = tmp_path / "ship" / "audit.jsonl"
    env = {
        "SHUQIAO_AUDIT_SYSLOG_TARGET": f"127.0.0.1:{receiver.port}",
        "SHUQIAO_AUDIT_SYSLOG_CA_FILE": str(receiver.ca),
        "SHUQIAO_AUDIT_SYSLOG_HOSTNAME": "gw-e2e",
        "SHUQIAO_AUDIT_FORWARD_JSONL": str(jsonl),
    }
    receiver.start()
    try:
        with serve(demo_env, **env) as base:
            _ask(base, 5)
            receiver.stop()  # the SOC's receiver goes down
            _ask(base, 5)
        # the gateway stopped too, with events the receiver never got
        receiver.start()
        with serve(demo_env, **env) as base:
            _ask(base, 5)
            wanted = {f"event:{s}" for s in _seqs(demo_env)}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                got = set(_syslog_ids(receiver))
                shipped = (
                    {orjson.loads(x)["id"] for x in jsonl.read_bytes().splitlines()}
                    if jsonl.exists()
                    else set()
                )
                if wanted <= got and wanted <= shipped:
                    break
                time.sleep(0.2)
    finally:
        receiver.stop()
    counts = _syslog_ids(receiver)
    assert wanted <= set(counts), f"missing at the receiver: {sorted(wanted - set(counts))[:10]}"
    assert wanted <= shipped, f"missing in the file: {sorted(wanted - shipped)[:10]}"
    assert {parse(line).hostname for line in receiver.lines()} == {"gw-e2e"}
