"""Signed responses (RFC 9421 HTTP Message Signatures + RFC 9530 Content-Digest, SM2/SM3).

`ResponseSigningMiddleware` is a pure ASGI middleware. On the paths it signs it buffers
the response (small JSON documents), then adds

    Content-Digest: sm3=:<base64 SM3 of the body>:
    Signature-Input: sig1=("@status" "content-digest" "content-type" "x-request-id");created=…;keyid="…"
    Signature: sig1=:<base64 DER SM2 signature of the RFC 9421 signature base>:

It must sit *outside* `RequestIdMiddleware` so that `X-Request-ID` is already on the
response it signs. `/share/graphql` responses are always signed (401s and 400s too);
`/open/graphql` responses when the request carries `Accept-Signature` (RFC 9421 §5).

The key is chosen when the request arrives and its kid put in the request state
(`request.state.signature_kid`), so the access event can name the key that signs the
response. With no usable key the response is 503 SIGNING_UNAVAILABLE whatever the app answers;
the app still runs, with `request.state.signing_unavailable` set, so the GraphQL endpoint can
refuse without reading data and the refusal is audited like any other.

The private key is loaded once and cached until `index.json` of the key store changes (rotation
by the CLI in another process) or the key expires.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import SIGNING_SECONDS
from keys.errors import UnknownKeyError
from keys.keystore import INDEX, KeyInfo, KeyStore
from keys.rfc9421 import sign_response
from keys.sm2 import SM2PrivateKey

log = logging.getLogger("shuqiao.crypto")

# request.state key: set when no signing key is usable (the endpoint refuses, audited)
SIGNING_UNAVAILABLE = "signing_unavailable"
# request.state key on the paths signed: `f(response)` signs the answer ahead, while its audit
# event commits (gateway.access_log.answer_once_recorded); the signature is used only if exactly
# that response is sent, else the response is signed as it leaves
PRESIGN = "presign_response"
NO_KEY_MESSAGE = "Responses must be signed and no signing key is available."

COMPONENTS = ("@status", "content-digest", "content-type", "x-request-id")
DEFAULT_VALIDITY_DAYS = 90


def signing_key_dir(var_dir: Path) -> Path:
    return var_dir / "keys" / "sm2"


def open_signing_store(
    var_dir: Path, *, create: bool = True, validity_days: int = DEFAULT_VALIDITY_DAYS
) -> KeyStore:
    """The gateway's SM2 signing-key store at `<var_dir>/keys/sm2/`; with `create`, a first
    key is generated when the store has no key valid now (`shuqiao init`, first start)."""
    store = KeyStore(signing_key_dir(var_dir))
    if create:
        try:
            store.current()
        except UnknownKeyError:
            info = store.generate(validity_days)
            log.info("generated the first gateway signing key kid=%s", info.kid)
    return store


class ResponseSigner:
    """The current signing key, cached; `sign()` returns the headers to add."""

    def __init__(self, store: KeyStore, components: tuple[str, ...] = COMPONENTS) -> None:
        self.store = store
        self.components = components
        self._stamp: tuple[int, int, int] | None = None
        self._current: tuple[KeyInfo, SM2PrivateKey] | None = None
        self._index = str(store.directory / INDEX)  # stat'ed per response: no Path join each time

    def _index_stamp(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self._index)
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def current(self) -> tuple[KeyInfo, SM2PrivateKey]:
        """The key to sign with now; raises `UnknownKeyError` when there is none."""
        stamp = self._index_stamp()
        cached = self._current
        if cached is None or stamp != self._stamp or not cached[0].valid_at(datetime.now(UTC)):
            self._current = cached = self.store.current()
            self._stamp = stamp
        return cached

    def sign(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        key: tuple[KeyInfo, SM2PrivateKey] | None = None,
    ) -> dict[str, str]:
        info, private = key or self.current()
        components = tuple(
            c for c in self.components if c.startswith("@") or c == "content-digest" or c in headers
        )
        with SIGNING_SECONDS.time():
            return sign_response(private, info.kid, status, headers, body, components=components)


def _header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


class ResponseSigningMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        signer: ResponseSigner,
        always: tuple[str, ...] = ("/share/graphql",),
        on_request: tuple[str, ...] = ("/open/graphql",),
        always_under: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.signer = signer
        self.always = always
        self.always_under = always_under  # path prefixes (e.g. the department subgraphs)
        self.on_request = on_request
        # the header fields a signature may cover (the others are derived: @status, the digest)
        self._signed_names = frozenset(
            c for c in signer.components if not c.startswith("@") and c != "content-digest"
        )

    def _wants(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if path in self.always or path.startswith(self.always_under):
            return True
        if path in self.on_request:
            return any(name == b"accept-signature" for name, _ in scope.get("headers", ()))
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._wants(scope):
            await self.app(scope, receive, send)
            return
        try:
            key = self.signer.current()
        except Exception:  # no usable signing key: fail closed, nothing unsigned leaves
            log.exception("no response-signing key available")
            # The endpoint still runs, to refuse and audit the request (it reads no data when
            # it sees this flag); whatever it answers, the client gets the 503.
            scope.setdefault("state", {})[SIGNING_UNAVAILABLE] = True

            async def withheld(message: Message) -> None:
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    await _unavailable(send, scope.get("state", {}).get("request_id"))

            await self.app(scope, receive, withheld)
            return
        state = scope.setdefault("state", {})
        state["signature_kid"] = key[0].kid
        start: Message | None = None
        chunks: list[bytes] = []
        # A signature made ahead (while the request's audit event commits), used only if the
        # response sent is that one: same status, body and signed header values.
        ahead: list[tuple[int, dict[str, str], bytes, dict[str, str]]] = []

        def sign_ahead(response: Response) -> None:
            """Sign `response` now, as it will leave (with this request's X-Request-ID)."""
            try:
                headers = {k: v for k, v in response.headers.items() if k in self._signed_names}
                headers["x-request-id"] = state["request_id"]
                body = bytes(response.body)
                status = response.status_code
                ahead[:] = [(status, headers, body, self.signer.sign(status, headers, body, key))]
            except Exception:  # signed when it is sent instead, as without this
                log.debug("response not signed ahead", exc_info=True)
                ahead.clear()

        state[PRESIGN] = sign_ahead

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            headers = list(start.get("headers", []))
            names = _header_map(headers)
            if ahead and _same(ahead[0], start["status"], names, body, self._signed_names):
                added = ahead[0][3]
            else:
                try:
                    added = self.signer.sign(start["status"], names, body, key)
                except Exception as err:  # fail closed: the 503, never the answer unsigned
                    # the type only: a message could quote what was being signed
                    log.error("response could not be signed (%s); answered 503", type(err).__name__)
                    await _unavailable(send, state.get("request_id"))
                    return
            headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in added.items()]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, buffered)


def _same(
    ahead: tuple[int, dict[str, str], bytes, dict[str, str]],
    status: int,
    headers: dict[str, str],
    body: bytes,
    names: frozenset[str],
) -> bool:
    """Whether a signature made ahead covers exactly this response: the status, the body and
    every header field a signature could cover (present or absent alike)."""
    a_status, a_headers, a_body, _ = ahead
    return a_status == status and all(a_headers.get(n) == headers.get(n) for n in names) and a_body == body


async def _unavailable(send: Send, request_id: str | None = None) -> None:
    """The fail-closed answer, with the request's id (set inside this middleware) when it has one."""
    body = orjson.dumps(
        {
            "errors": [
                {
                    "message": NO_KEY_MESSAGE,
                    "extensions": {"code": "SIGNING_UNAVAILABLE"},
                }
            ]
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"5"),
                *([(b"x-request-id", request_id.encode("latin-1"))] if request_id else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


DETACHED_HEADERS = ("content-type", "content-digest", "x-request-id", "signature-input", "signature")


def detached_signature(status: int, headers: Mapping[str, str]) -> bytes:
    """A signed response's status line and the header fields its signature needs, as a file of
    its own: kept beside a saved body (an audit export), it is verified with
    `shuqiao verify-response FILE.sig --body FILE` or the OpenSSL recipe in docs/crypto.md."""
    lower = {k.lower(): v for k, v in headers.items()}
    lines = [f"HTTP/1.1 {status}"] + [f"{name}: {lower[name]}" for name in DETACHED_HEADERS if name in lower]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
