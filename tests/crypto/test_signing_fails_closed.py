"""A response that cannot be signed never leaves unsigned: the client gets the 503
SIGNING_UNAVAILABLE, with no data and no signature, whether it was signed ahead (as the GraphQL
tiers do while the audit event commits) or on send. Before, an exception in the signature on
send left Starlette's unsigned 500."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.crypto.signing import PRESIGN, ResponseSigner, ResponseSigningMiddleware, open_signing_store
from gateway.middleware import RequestIdMiddleware
from keys.rfc9421 import verify_response


class BreakableSigner(ResponseSigner):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.broken = False

    def sign(self, *args: Any, **kw: Any) -> dict[str, str]:
        if self.broken:
            raise RuntimeError("signing broke")
        return super().sign(*args, **kw)


def _app(signer: ResponseSigner) -> Starlette:
    async def ahead(request: Request) -> Response:
        response = JSONResponse({"data": {"secret": "row"}})
        getattr(request.state, PRESIGN)(response)
        return response

    async def on_send(request: Request) -> Response:
        return JSONResponse({"data": {"secret": "row"}})

    return Starlette(
        routes=[Route("/ahead", ahead, methods=["POST"]), Route("/on_send", on_send, methods=["POST"])],
        middleware=[
            Middleware(ResponseSigningMiddleware, signer=signer, always=("/ahead", "/on_send")),
            Middleware(RequestIdMiddleware),
        ],
    )


async def _post(app: Starlette, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.post(path)


@pytest.fixture
def signer(tmp_path: Path) -> BreakableSigner:
    return BreakableSigner(open_signing_store(tmp_path))


@pytest.mark.parametrize("path", ["/ahead", "/on_send"])
def test_a_signature_that_cannot_be_made_is_a_503_never_an_unsigned_answer(
    signer: BreakableSigner, path: str
) -> None:
    signer.broken = True
    r = asyncio.run(_post(_app(signer), path))
    assert r.status_code == 503
    assert r.json()["errors"][0]["extensions"]["code"] == "SIGNING_UNAVAILABLE"
    assert "signature" not in r.headers and "data" not in r.json()
    assert b"secret" not in r.content


@pytest.mark.parametrize("path", ["/ahead", "/on_send"])
def test_the_same_app_signs_when_the_signer_works(signer: BreakableSigner, path: str) -> None:
    r = asyncio.run(_post(_app(signer), path))
    assert r.status_code == 200 and r.json() == {"data": {"secret": "row"}}
    assert verify_response(r.status_code, dict(r.headers), r.content, signer.store.public).keyid
