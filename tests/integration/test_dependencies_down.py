"""Every failure is an answer, audited (issue 13, item 3): a dependency that is down (PostgreSQL,
Redis) is a 503 with Retry-After and a code on every tier and on /readyz; an unexpected exception
is a 500 problem document with no exception text — each with X-Request-ID, an access event, and a
signature where the tier signs."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from gateway.access_log import AccessEvent
from gateway.app import build_state, create_app
from tests.conftest import DemoEnv, gql
from tests.support import free_port

OPEN_Q = "{ enterpriseRegistration(first: 1) { totalCount } }"


class Recorder:
    """An access log that keeps what it is given (the chained store would need the database)."""

    def __init__(self) -> None:
        self.events: list[AccessEvent] = []
        self.fail = False

    async def record(self, event: AccessEvent) -> None:
        if self.fail:
            raise RuntimeError("audit store down")
        self.events.append(event)

    def by_request(self, request_id: str) -> list[AccessEvent]:
        return [e for e in self.events if e.request_id == request_id]


def _app(settings: Any) -> tuple[TestClient, Recorder]:
    recorder = Recorder()
    app = create_app(settings, state=build_state(settings, access_log=recorder))
    return TestClient(app, raise_server_exceptions=False), recorder


def _token(client: TestClient, env: DemoEnv, dept: str = "samr") -> str:
    c = env.credentials["clients"][dept]
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c["client_id"], c["client_secret"])
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _answered(r: Any, status: int, code: str, recorder: Recorder) -> AccessEvent:
    """The response is the problem document with the code and a request id, and exactly one
    access event carries that request id, status and code."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["errors"][0]["extensions"]["code"] == code, body
    request_id = r.headers["x-request-id"]
    if status == 503:
        assert int(r.headers["retry-after"]) >= 1
    events = recorder.by_request(request_id)
    assert len(events) == 1, events
    assert events[0].status == status and code in events[0].error_codes
    return events[0]


# -- unexpected exceptions


@pytest.fixture(scope="module")
def failing(demo_env: DemoEnv) -> Iterator[tuple[TestClient, Recorder, DemoEnv]]:
    client, recorder = _app(demo_env.settings)

    async def boom(request: Any) -> Any:
        raise RuntimeError("secret-detail 110101199001011234")

    # Routes the test adds behind every middleware, as any handler of the app would be.
    client.app.router.routes.append(Route("/boom", boom))
    oauth = next(r for r in client.app.router.routes if isinstance(r, Mount) and r.path == "/oauth")
    oauth.routes.append(Route("/boom", boom, methods=["POST"]))
    with client:
        yield client, recorder, demo_env


def test_an_unexpected_exception_on_a_tier_is_an_audited_500(
    failing: tuple[TestClient, Recorder, DemoEnv], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, recorder, env = failing
    token = _token(client, env)

    async def explode(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret-detail 110101199001011234")

    monkeypatch.setattr("gateway.graphql_http.run", explode)
    r = gql(client, "open", OPEN_Q)
    event = _answered(r, 500, "INTERNAL_SERVER_ERROR", recorder)
    assert event.tier == "open" and "secret-detail" not in r.text
    r = gql(client, "share", OPEN_Q, token=token)
    event = _answered(r, 500, "INTERNAL_SERVER_ERROR", recorder)
    assert event.tier == "share" and event.principal_id and "secret-detail" not in r.text
    assert "sig1=" in r.headers["signature"] and "x-request-id" in r.headers["signature-input"]


def test_an_unexpected_exception_anywhere_else_is_an_audited_problem_document(
    failing: tuple[TestClient, Recorder, DemoEnv],
) -> None:
    client, recorder, _ = failing
    r = client.get("/boom", headers={"X-Request-ID": "boom-request-0001"})
    assert r.headers["x-request-id"] == "boom-request-0001"
    event = _answered(r, 500, "INTERNAL_SERVER_ERROR", recorder)
    assert event.tier == "http" and event.operation_name == "GET /boom"
    assert "secret-detail" not in r.text and r.headers["content-type"].startswith("application/json")
    r = client.post("/oauth/boom")  # RFC 6749's error shape on /oauth/*
    assert r.status_code == 500 and r.json()["error"] == "server_error" and "secret-detail" not in r.text
    assert len(recorder.by_request(r.headers["x-request-id"])) == 1


def test_a_pool_timeout_anywhere_else_is_an_audited_503(
    failing: tuple[TestClient, Recorder, DemoEnv],
) -> None:
    """A route outside the tiers that waits out the pool: 503 SERVICE_BUSY, recorded like any
    failure (in RFC 6749's shape on /oauth/*)."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    client, recorder, _ = failing

    async def wait_out(request: Any) -> Any:
        raise PoolTimeout("QueuePool limit of size 10 overflow 0 reached")

    client.app.router.routes.append(Route("/busy", wait_out))
    oauth = next(r for r in client.app.router.routes if isinstance(r, Mount) and r.path == "/oauth")
    oauth.routes.append(Route("/busy", wait_out, methods=["POST"]))
    event = _answered(client.get("/busy"), 503, "SERVICE_BUSY", recorder)
    assert event.tier == "http" and event.operation_name == "GET /busy"
    r = client.post("/oauth/busy")
    assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    (recorded,) = recorder.by_request(r.headers["x-request-id"])
    assert recorded.error_codes == ["SERVICE_BUSY"]


def test_a_failure_in_the_signing_middleware_is_the_fail_closed_503(
    failing: tuple[TestClient, Recorder, DemoEnv],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Signing wraps the tiers: if the signature cannot be made, the answer is withheld as when no
    key is valid — 503 SIGNING_UNAVAILABLE in the same JSON shape with the request id, no
    exception text in the answer or the log, no data, no signature."""
    client, _, env = failing
    token = _token(client, env)
    signer = client.app.state.gateway.signer

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret-detail in the signer")

    monkeypatch.setattr(signer, "sign", broken)
    r = gql(client, "share", OPEN_Q, token=token, headers={"X-Request-ID": "outer-failure-01"})
    assert r.status_code == 503 and r.json()["errors"][0]["extensions"]["code"] == "SIGNING_UNAVAILABLE"
    assert r.headers["x-request-id"] == "outer-failure-01" and "secret-detail" not in r.text
    assert "data" not in r.json() and "signature" not in r.headers
    assert "secret-detail" not in caplog.text


def test_a_refusal_whose_audit_fails_is_still_an_answer(
    failing: tuple[TestClient, Recorder, DemoEnv], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, recorder, _ = failing
    monkeypatch.setattr(recorder, "fail", True)
    r = client.get("/boom")
    assert r.status_code == 500 and r.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    r = gql(client, "open", OPEN_Q)  # fail closed: the data is withheld
    assert r.status_code == 503 and r.json()["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"


# -- Redis unreachable


@pytest.fixture(scope="module")
def no_redis(demo_env: DemoEnv) -> Iterator[tuple[TestClient, Recorder, DemoEnv]]:
    settings = replace(demo_env.settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nobody listens
    client, recorder = _app(settings)
    with client:
        yield client, recorder, demo_env


def test_redis_down_fails_closed_with_503_on_the_tiers_and_the_explorer(
    no_redis: tuple[TestClient, Recorder, DemoEnv],
) -> None:
    client, recorder, _ = no_redis
    _answered(gql(client, "open", OPEN_Q), 503, "RATE_LIMIT_UNAVAILABLE", recorder)
    r = client.get("/open/graphql", params={"query": OPEN_Q})
    _answered(r, 503, "RATE_LIMIT_UNAVAILABLE", recorder)
    r = client.get("/explore/api/catalogue")
    event = _answered(r, 503, "RATE_LIMIT_UNAVAILABLE", recorder)
    assert event.operation_name == "GET /explore/api/catalogue"


def test_readiness_reports_each_dependency(no_redis: tuple[TestClient, Recorder, DemoEnv]) -> None:
    client, _, _ = no_redis
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json() == {
        "status": "unavailable",
        "database": "ok",
        "redis": "unreachable",
        "audit": "ok",
        "signing": "ok",
    }


def test_readiness_with_redis_up(demo_env: DemoEnv) -> None:
    settings = replace(demo_env.settings, redis_url="redis://127.0.0.1:6379/15")
    client, _ = _app(settings)
    with client:
        r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["redis"] == "ok" and r.json()["status"] == "ready"


# -- PostgreSQL stopped


class Proxy:
    """A TCP proxy in front of PostgreSQL that the test stops (refusing new connections and
    cutting the open ones, as a stopped server does) and starts again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def db_behind_proxy(demo_env: DemoEnv) -> Iterator[tuple[TestClient, Recorder, Proxy, DemoEnv]]:
    if demo_env.backend != "postgres":
        pytest.skip("a SQLite file cannot be stopped")
    from sqlalchemy.engine import make_url

    url = make_url(demo_env.settings.database_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    settings = replace(
        demo_env.settings,
        database_url=url.set(port=proxy.port).render_as_string(hide_password=False),
        db_pool_timeout=2.0,
    )
    client, recorder = _app(settings)
    try:
        with client:
            yield client, recorder, proxy, demo_env
    finally:
        proxy.stop()


def test_database_down_is_503_on_every_tier_and_readyz_then_recovers(
    db_behind_proxy: tuple[TestClient, Recorder, Proxy, DemoEnv],
) -> None:
    client, recorder, proxy, env = db_behind_proxy
    token = _token(client, env)
    assert gql(client, "open", OPEN_Q).status_code == 200
    assert gql(client, "share", OPEN_Q, token=token).status_code == 200
    proxy.stop()
    try:
        # Pooled connections are cut and new ones refused: every request is the same clean 503.
        for _ in range(3):
            _answered(gql(client, "open", OPEN_Q), 503, "DATABASE_UNAVAILABLE", recorder)
            r = gql(client, "share", OPEN_Q, token=token)
            _answered(r, 503, "DATABASE_UNAVAILABLE", recorder)
            assert "sig1=" in r.headers["signature"]
        r = client.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["database"] == "unreachable" and r.json()["audit"] == "unreachable"
        r = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(
                env.credentials["clients"]["samr"]["client_id"],
                env.credentials["clients"]["samr"]["client_secret"],
            ),
        )
        assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
        assert r.headers["retry-after"] and r.headers["x-request-id"]
    finally:
        proxy.start()
    # Back: a connection cut while pooled is discarded, not handed out again.
    statuses = [gql(client, "open", OPEN_Q).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert client.get("/readyz").status_code == 200


def test_a_browser_gets_the_failure_as_a_page(no_redis: tuple[TestClient, Recorder, DemoEnv]) -> None:
    """A page whose handler fails on Redis answers a browser with a page (same status, code, request
    id and Retry-After), not the JSON a program gets; both are recorded alike."""
    client, recorder, _ = no_redis
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    r = client.get("/explore/api/catalogue", headers=browser)
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
    assert int(r.headers["retry-after"]) >= 1
    assert "服务暂时不可用" in r.text and "RATE_LIMIT_UNAVAILABLE" in r.text
    assert r.headers["x-request-id"] in r.text
    (event,) = recorder.by_request(r.headers["x-request-id"])
    assert event.status == 503 and "RATE_LIMIT_UNAVAILABLE" in event.error_codes
    r = client.get("/explore/api/catalogue", headers={"Accept": "application/json, text/html"})
    assert r.status_code == 503 and r.json()["errors"][0]["extensions"]["code"] == "RATE_LIMIT_UNAVAILABLE"
