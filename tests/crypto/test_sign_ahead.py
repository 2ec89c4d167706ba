"""Signing a response ahead (while its audit event commits): the signature made ahead is used only
when exactly that response leaves; any other answer is signed as it leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.crypto.signing import PRESIGN, ResponseSigner, ResponseSigningMiddleware, open_signing_store
from gateway.middleware import RequestIdMiddleware
from keys.rfc9421 import verify_response


class CountingSigner(ResponseSigner):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls = 0

    def sign(self, *args: Any, **kw: Any) -> dict[str, str]:
        self.calls += 1
        return super().sign(*args, **kw)


def _app(signer: ResponseSigner) -> Starlette:
    async def same(request: Request) -> Response:
        response = JSONResponse({"data": {"n": 1}})
        getattr(request.state, PRESIGN)(response)
        return response

    async def replaced(request: Request) -> Response:
        # signed ahead, then withheld for another answer (as when the audit write fails)
        getattr(request.state, PRESIGN)(JSONResponse({"data": {"n": 1}}))
        return JSONResponse({"errors": [{"message": "no"}]}, status_code=503)

    async def header_changed(request: Request) -> Response:
        response = JSONResponse({"data": {"n": 1}})
        getattr(request.state, PRESIGN)(response)
        response.headers["content-type"] = "application/graphql-response+json"
        return response

    routes = [Route(f"/{f.__name__}", f, methods=["POST"]) for f in (same, replaced, header_changed)]
    always = tuple(r.path for r in routes)
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(ResponseSigningMiddleware, signer=signer, always=always),
            Middleware(RequestIdMiddleware),
        ],
    )


def test_signature_made_ahead_is_used_only_for_that_response(tmp_path: Path) -> None:
    signer = CountingSigner(open_signing_store(tmp_path))
    client = TestClient(_app(signer))
    for path, calls in (("/same", 1), ("/replaced", 2), ("/header_changed", 2)):
        signer.calls = 0
        r = client.post(path)
        assert r.status_code == (503 if path == "/replaced" else 200)
        assert signer.calls == calls, path
        verified = verify_response(r.status_code, dict(r.headers), r.content, signer.store.public)
        assert verified.keyid == signer.current()[0].kid
        assert "x-request-id" in r.headers["signature-input"]
