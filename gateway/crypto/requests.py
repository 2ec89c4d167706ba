"""Signed requests on the share tier (RFC 9421 HTTP Message Signatures, SM2/SM3).

A department client signs its `POST /share/graphql` with its department's registered SM2 key
(`department_key`, the same key fields are encrypted to) — `keys.rfc9421.sign_request`:

    Content-Digest: sm3=:<base64 SM3 of the body>:
    Signature-Input: sig1=("@method" "@target-uri" "content-digest");created=…;keyid="<kid>";nonce="…"
    Signature: sig1=:<base64 DER SM2 signature of the RFC 9421 signature base>:

`RequestSignatureVerifier.check` runs after the bearer token is accepted and before anything
executes. A department marked with `shuqiao keys require-signed-requests` must sign; any
other client may, and a signature that is present is always verified. Refusals are
`SignedRequestRefused` (401, `WWW-Authenticate: Signature …`), which the endpoint turns into
its usual error response and access-log record.

Checks: syntax and coverage (`@method`, `@target-uri` or `@authority` + `@path`,
`content-digest`; `created`, `keyid`, `nonce`), the kid is an active key of the token's
department, the SM2 signature, `created` within ±`window` seconds, the body's SM3 digest, and
the nonce not seen before within the window (Redis `SET NX EX` when `SHUQIAO_REDIS_URL` is
set, shared by every worker; an in-process TTL map otherwise).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request

from catalogue.models import Department, utcnow
from gateway.crypto.models import SignedRequestPolicy
from gateway.crypto.service import DepartmentKeyDirectory, KeyRegistrationError
from keys.errors import SignatureError
from keys.rfc9421 import VerifiedSignature, verify_request
from keys.sm2 import SM2PublicKey

log = logging.getLogger("shuqiao.crypto")

WINDOW_SECONDS = 300
ACCEPT_SIGNATURE = 'sig1=("@method" "@target-uri" "content-digest");created;keyid;nonce'
_MISMATCH = "SM2 signature does not match"


class SignedRequestRefused(Exception):
    """A share-tier request whose signature is missing (when required) or does not verify."""

    def __init__(self, reason: str, *, error: str = "invalid_signature", status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.status = status

    @property
    def code(self) -> str:
        if self.status != 401:
            return "SIGNATURE_CHECK_UNAVAILABLE"
        return "SIGNATURE_REQUIRED" if self.error == "signature_required" else "INVALID_SIGNATURE"

    @property
    def message(self) -> str:
        if self.error == "signature_required":
            return f"This client must sign its requests (RFC 9421, SM2): {self.reason}."
        if self.status != 401:
            return f"Request signatures cannot be checked now: {self.reason}."
        return f"The request signature is not valid: {self.reason}."

    @property
    def headers(self) -> dict[str, str]:
        if self.status != 401:
            return {"Retry-After": "5"}
        description = "".join(c for c in self.reason if c.isascii() and c.isprintable() and c not in '"\\')
        return {
            "WWW-Authenticate": (
                f'Signature realm="shuqiao", error="{self.error}", error_description="{description}"'
            ),
            "Accept-Signature": ACCEPT_SIGNATURE,
        }


class NonceStore:
    """Nonces seen within the window: Redis `SET NX EX` when shared, else an in-process map."""

    def __init__(self, redis_url: str | None = None, namespace: str = "shuqiao") -> None:
        self.namespace = namespace
        self._mem: dict[str, float] = {}
        self._redis = None
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url)

    async def first_use(self, key: str, ttl: int) -> bool:
        """True the first time `key` is seen within `ttl` seconds; False on a repeat."""
        if self._redis is not None:
            return bool(await self._redis.set(f"{self.namespace}:sig-nonce:{key}", 1, nx=True, ex=ttl))
        now = time.monotonic()
        if len(self._mem) > 100_000:
            self._mem = {k: v for k, v in self._mem.items() if v > now}
        if self._mem.get(key, 0.0) > now:
            return False
        self._mem[key] = now + ttl
        return True


def _headers(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.headers.raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


class RequestSignatureVerifier:
    def __init__(
        self,
        directory: DepartmentKeyDirectory,
        nonces: NonceStore,
        *,
        window: int = WINDOW_SECONDS,
        public_base: str | None = None,
    ) -> None:
        self.directory = directory
        self.nonces = nonces
        self.window = window
        self.public_base = public_base.rstrip("/") if public_base else None

    def _targets(self, request: Request) -> list[str]:
        """The URIs a client may have signed: the gateway's public base (the issuer, what
        clients are told to use) + path, and the URI of the request as it arrived."""
        query = request.url.query
        seen = [str(request.url.replace(fragment=""))]
        if self.public_base:
            public = f"{self.public_base}{request.url.path}" + (f"?{query}" if query else "")
            if public not in seen:
                seen.insert(0, public)
        return seen

    async def check(self, request: Request, department: str, body: bytes) -> VerifiedSignature | None:
        """None for an unsigned request from a department that need not sign; the verified
        signature otherwise; raises `SignedRequestRefused`."""
        headers = _headers(request)
        if "signature" not in headers and "signature-input" not in headers:
            if not self.directory.loaded:
                raise SignedRequestRefused("department keys are unavailable", status=503)
            if self.directory.requires_signed_requests(department):
                raise SignedRequestRefused(
                    "the Signature and Signature-Input headers are missing", error="signature_required"
                )
            return None
        now = datetime.now(UTC)

        def lookup(kid: str) -> SM2PublicKey | None:
            key = self.directory.by_kid(kid)
            if key is None:
                return None
            if key.department != department:
                raise SignatureError(f"keyid {kid!r} is not a key of department {department!r}")
            if not key.valid_at(now):
                raise SignatureError(f"keyid {kid!r} is not valid now")
            return key.public_key

        verified: VerifiedSignature | None = None
        first_error: SignatureError | None = None
        for target in self._targets(request):
            try:
                verified = verify_request(
                    request.method,
                    target,
                    headers,
                    body,
                    lookup,
                    max_age=self.window,
                    max_skew=self.window,
                    now=int(now.timestamp()),
                    require_nonce=True,
                )
                break
            except SignatureError as err:
                first_error = first_error or err
                if not str(err).startswith(_MISMATCH):
                    break
        if verified is None:
            assert first_error is not None
            raise SignedRequestRefused(str(first_error)) from None
        try:
            fresh = await self.nonces.first_use(f"{verified.keyid}:{verified.nonce}", 2 * self.window + 60)
        except Exception:
            log.exception("nonce store unavailable")
            raise SignedRequestRefused("the nonce store is unavailable", status=503) from None
        if not fresh:
            raise SignedRequestRefused("nonce already used (replayed request)")
        request.state.request_signature_kid = verified.keyid
        return verified


def verifier_for(state: object) -> RequestSignatureVerifier | None:
    """The share tier's verifier for a `GatewayState` (None without a department key directory)."""
    directory = getattr(state, "department_keys", None)
    if directory is None:
        return None
    settings = state.settings  # type: ignore[attr-defined]
    return RequestSignatureVerifier(
        directory,
        NonceStore(settings.redis_url, settings.redis_namespace),
        public_base=settings.issuer,
    )


# ---------------------------------------------------------------- the per-department flag


async def set_signed_requests_required(engine: AsyncEngine, department: str, required: bool) -> bool:
    """Mark (or unmark) `department` as having to sign its share-tier requests. Running
    gateways apply it within the catalogue poll interval (the department key directory)."""
    async with AsyncSession(engine) as session:
        if await session.get(Department, department) is None:
            raise KeyRegistrationError(f"unknown department {department!r}")
        row = await session.get(SignedRequestPolicy, department)
        if row is None:
            row = SignedRequestPolicy(department_code=department, required=required)
        else:
            row.required = required
            row.updated_at = utcnow()
        session.add(row)
        await session.commit()
    log.info("signed requests %s for department=%s", "required" if required else "optional", department)
    return required


async def departments_requiring_signed_requests(engine: AsyncEngine) -> list[str]:
    from sqlalchemy import select
    from sqlmodel import col

    stmt = select(col(SignedRequestPolicy.department_code)).where(col(SignedRequestPolicy.required) == True)  # noqa: E712
    async with engine.connect() as conn:
        return sorted((await conn.execute(stmt)).scalars().all())
