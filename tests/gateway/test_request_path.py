"""The request path's cheaper pieces (issue 18) answer as the ones they replaced: request ids,
CORS headers on the raw list, the failure catch without its own `send` wrapper, endpoints called
without request_response's exception wrapper, headers added to a built response."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from gateway.graphql_http import _add_headers
from gateway.middleware import FailureMiddleware, RequestIdMiddleware, new_request_id
from gateway.portal.cors import EXPOSE, _allow_headers, _with_cors
from gateway.static_graphql import EveryMethod


def test_new_request_ids_are_uuid4_hex() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for rid in list(ids)[:200]:
        parsed = uuid.UUID(hex=rid)
        assert len(rid) == 32 and parsed.hex == rid
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


async def _ok(request: Request) -> Response:
    return PlainTextResponse(request.scope["state"]["request_id"])


def _ids_app() -> TestClient:
    return TestClient(Starlette(routes=[Route("/", _ok)], middleware=[Middleware(RequestIdMiddleware)]))


def test_request_id_given_kept_bad_replaced_last_of_several() -> None:
    client = _ids_app()
    r = client.get("/", headers={"X-Request-ID": "abc-12345678"})
    assert r.headers["x-request-id"] == r.text == "abc-12345678"
    bad = client.get("/", headers={"X-Request-ID": "no spaces allowed"})
    assert bad.headers["x-request-id"] == bad.text != "no spaces allowed"
    assert uuid.UUID(hex=bad.text).version == 4
    assert client.get("/").headers["x-request-id"] != client.get("/").headers["x-request-id"]
    both = client.get("/", headers=[("X-Request-ID", "first-1234567"), ("X-Request-ID", "second-1234567")])
    assert both.text == "second-1234567"  # as the dict of the headers the middleware used to build


def _cors_by_starlette(headers: list[tuple[bytes, bytes]], origin: str | None) -> list[tuple[bytes, bytes]]:
    """What the CORS middleware did before: Starlette's MutableHeaders on the message."""
    message: dict[str, Any] = {"headers": list(headers)}
    out = MutableHeaders(scope=message)
    out.add_vary_header("Origin")
    if origin is not None:
        out["Access-Control-Allow-Origin"] = origin
        out["Access-Control-Expose-Headers"] = EXPOSE
    return list(message["headers"])


@pytest.mark.parametrize("origin", [None, "*", "https://app.example.cn"])
@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"content-type", b"application/json"), (b"content-length", b"2")],
        [(b"vary", b"Accept"), (b"content-type", b"text/plain")],
        [(b"vary", b"Accept"), (b"vary", b"Accept-Encoding"), (b"x-request-id", b"abc")],
        [(b"access-control-allow-origin", b"https://evil.example"), (b"content-length", b"0")],
        [(b"access-control-expose-headers", b"X"), (b"access-control-expose-headers", b"Y")],
    ],
)
def test_cors_headers_as_starlette_made_them(headers: list[tuple[bytes, bytes]], origin: str | None) -> None:
    added = _allow_headers(origin) if origin is not None else ()
    ours = _with_cors(headers, added)
    theirs = _cors_by_starlette(headers, origin)
    assert ours == theirs
    assert [k for k, _ in ours].count(b"vary") == 1
    if origin is not None:
        assert dict(ours)[b"access-control-allow-origin"] == origin.encode()


class _Fails:
    """A raw ASGI endpoint (the router calls it with scope, receive, send) that raises."""

    def __init__(self, when: str) -> None:
        self.when = when

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.when == "after":
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom")


def _failing_app(when: str, *, request_ids: bool) -> TestClient:
    endpoint = _Fails(when)
    middleware = [Middleware(RequestIdMiddleware)] if request_ids else []
    middleware.append(Middleware(FailureMiddleware))
    app = Starlette(routes=[Route("/", endpoint)], middleware=middleware)
    return TestClient(app, raise_server_exceptions=True)


@pytest.mark.parametrize("request_ids", [True, False])
def test_a_failure_before_the_answer_is_a_problem_document(request_ids: bool) -> None:
    r = _failing_app("before", request_ids=request_ids).get("/")
    assert r.status_code == 500
    assert r.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert ("x-request-id" in r.headers) is request_ids


@pytest.mark.parametrize("request_ids", [True, False])
def test_a_failure_after_the_status_line_is_left_to_the_server(request_ids: bool) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _failing_app("after", request_ids=request_ids).get("/")


async def _refuses(request: Request) -> Response:
    raise HTTPException(418, "teapot")


def _sync_endpoint(request: Request) -> Response:
    return PlainTextResponse("sync")


async def _teapot(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"handled": exc.status_code}, status_code=exc.status_code)


def test_every_method_endpoints_keep_the_apps_exception_handlers() -> None:
    app = Starlette(
        routes=[Route("/refuses", EveryMethod(_refuses)), Route("/sync", EveryMethod(_sync_endpoint))],
        exception_handlers={HTTPException: _teapot},
    )
    client = TestClient(app)
    for method in ("GET", "POST", "DELETE"):
        r = client.request(method, "/refuses")
        assert (r.status_code, r.json()) == (418, {"handled": 418})
    assert client.put("/sync").text == "sync"


def test_added_headers_replace_or_append() -> None:
    response = Response(b"{}", headers={"RateLimit": "old", "X-Other": "1"}, media_type="application/json")
    _add_headers(response, {"RateLimit": '"anonymous";r=9;t=60', "RateLimit-Policy": '"anonymous";q=10;w=60'})
    assert response.headers.getlist("ratelimit") == ['"anonymous";r=9;t=60']
    assert response.headers["ratelimit-policy"] == '"anonymous";q=10;w=60'
    assert response.headers["x-other"] == "1" and response.headers["content-length"] == "2"
    _add_headers(response, {})
    assert len(response.raw_headers) == 5


def test_cors_middleware_reads_the_origin_from_the_raw_headers() -> None:
    from gateway.portal.cors import CORSMiddleware, policies

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(request.method)

    app = Starlette(
        routes=[Route("/open/x", endpoint, methods=["GET", "OPTIONS"])],
        middleware=[Middleware(CORSMiddleware, rules=policies(("https://a.example.cn",), ()))],
    )
    client = TestClient(app)
    named = client.get("/open/x", headers={"Origin": "https://a.example.cn"})
    assert named.headers["access-control-allow-origin"] == "https://a.example.cn"
    assert named.headers["vary"] == "Origin"
    other = client.get("/open/x", headers={"Origin": "https://b.example.cn"})
    assert "access-control-allow-origin" not in other.headers and other.headers["vary"] == "Origin"
    first = client.get(
        "/open/x", headers=[("Origin", "https://a.example.cn"), ("Origin", "https://b.example.cn")]
    )
    assert first.headers["access-control-allow-origin"] == "https://a.example.cn"
    # OPTIONS without Access-Control-Request-Method is no preflight: the route answers it
    plain = client.options("/open/x", headers={"Origin": "https://a.example.cn"})
    assert plain.text == "OPTIONS" and plain.headers["access-control-allow-origin"] == "https://a.example.cn"
    pre = client.options(
        "/open/x", headers={"Origin": "https://a.example.cn", "Access-Control-Request-Method": "POST"}
    )
    assert pre.status_code == 204 and pre.headers["access-control-max-age"] == "600"
