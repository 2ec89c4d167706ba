"""`GET /keys/sm2`: the gateway's public SM2 response-signing keys (never private material).

Every key valid now is listed — the active one and retired ones still inside their
rotation overlap — so a consumer can verify a response signed just before a rotation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from keys.keystore import KeyStore


def public_keys(store: KeyStore, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(UTC)
    out = []
    for info in store.list():
        if not info.valid_at(now):
            continue
        pem = (store.directory / f"{info.kid}.pub.pem").read_text("ascii")
        out.append({**info.to_json(), "alg": "SM2", "use": "sig", "pem": pem})
    # the active (signing) keys first, newest first
    return sorted(out, key=lambda k: (k["status"] == "active", k["not_before"]), reverse=True)


class SigningKeysEndpoint:
    def __init__(self, store: KeyStore) -> None:
        self.store = store

    async def handle(self, request: Request) -> JSONResponse:
        keys = [
            {k: entry[k] for k in ("kid", "alg", "use", "pem", "not_before", "not_after", "status")}
            for entry in public_keys(self.store)
        ]
        return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=300"})
