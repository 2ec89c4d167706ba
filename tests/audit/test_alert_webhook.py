"""New alerts POSTed to a webhook, the body SM2-signed with the gateway's key: verified here by the
`openssl` command line alone (SM3, signer ID 1234567812345678); a receiver that fails is retried
until it answers 2xx; the URL's token never reaches a log or the status."""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, insert

from gateway.audit.alerts import ALERTS
from gateway.audit.forward import CURSORS, Forwarder, WebhookSink, forward_status
from gateway.crypto.signing import ResponseSigner, open_signing_store
from tests.audit.chain_helpers import append, run_with_engine
from tests.audit.test_forward import ev


class Hook:
    """An HTTP receiver answering the statuses in `answers` in turn (then 204), keeping each request."""

    def __init__(self, answers: list[int]) -> None:
        self.answers, self.requests = list(answers), []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((dict(self.headers), body))
                self.send_response(hook.answers.pop(0) if hook.answers else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/soc?token=s3cret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fresh(db: str) -> str:
    async def clean(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(delete(ALERTS))
            await conn.execute(delete(CURSORS))

    run_with_engine(db, clean)
    return db


def test_alerts_reach_the_webhook_signed_and_openssl_verifies_them(
    fresh: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command line is required"
    store = open_signing_store(tmp_path / "var")
    hook = Hook([503])
    sink = WebhookSink(hook.url, ResponseSigner(store))

    async def go(engine: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
        await append(engine, [ev(i) for i in range(1, 4)])
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            for seq in (1, 2):
                await conn.execute(
                    insert(ALERTS).values(
                        rule="forbidden_probing", principal_id="probe", consumer="samr", seq=seq,
                        occurred_at=now, raised_at=now, summary="探测 probing", detail="{}",
                    )
                )  # fmt: skip
        fwd = Forwarder(engine, sink)
        failed = await fwd.run_once()
        ok = await fwd.run_once()
        async with engine.connect() as conn:
            return failed, ok, await forward_status(conn)

    with caplog.at_level(logging.DEBUG):
        failed, ok, status = run_with_engine(fresh, go)
    hook.close()
    assert (failed.ok, failed.error) == (False, "HTTP 503")
    assert (ok.ok, ok.events, ok.alerts) == (True, 0, 2)  # alerts only, never events
    assert len(hook.requests) == 2 and hook.requests[0][1] != b""  # the same alerts, sent again
    headers, body = hook.requests[1]
    doc = orjson.loads(body)
    assert doc["type"] == "shuqiao.audit.alerts" and [a["seq"] for a in doc["alerts"]] == [1, 2]

    kid = headers["X-Shuqiao-Key-Id"]
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(headers["X-Shuqiao-Signature"]))
    pub = tmp_path / "var" / "keys" / "sm2" / f"{kid}.pub.pem"
    assert pub.exists()
    cmd = [
        openssl, "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
        "-pubin", "-inkey", str(pub), "-in", "body.json", "-sigfile", "sig.der",
    ]  # fmt: skip
    good = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert good.returncode == 0 and "Signature Verified Successfully" in good.stdout, (
        good.stdout + good.stderr
    )
    (tmp_path / "body.json").write_bytes(body.replace(b"probe", b"prube"))
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True, check=False).returncode != 0

    # the URL's token is nowhere: not in the status, the reports or the logs
    (row,) = status
    assert row["sink"] == "webhook" and row["lag_events"] is None and row["lag_alerts"] == 0
    shown = repr(status) + repr(failed) + repr(ok) + caplog.text + sink.describe()
    assert "s3cret" not in shown
    assert sink.describe() == hook.url.split("?")[0]


def test_a_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_URL"):
        WebhookSink("ftp://soc.example/x", None)
