"""Access tokens: JWTs per RFC 9068 (typ at+jwt), ES256, one audience per tier.

Validation is strict: one algorithm, known key id, issuer, audience, expiry with a small
leeway. Verified tokens are cached until they expire, so the signature check costs
once per token, not once per request."""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

ALGORITHM = "ES256"
SHARE_AUDIENCE = "shuqiao:share"
LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """The token is not acceptable; the message is for logs, never for the client."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    client_id: str
    department: str
    scopes: frozenset[str]
    subject: str
    expires_at: int
    jti: str


def load_signing_key(path: Path, *, create: bool = False) -> ECKey:
    if path.exists():
        key = ECKey.import_key(path.read_bytes())
    elif create:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ECKey.generate_key("P-256", auto_kid=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.as_pem(private=True))
    else:
        raise FileNotFoundError(f"no token signing key at {path}: run `shuqiao init`")
    key.ensure_kid()
    return key


class TokenService:
    def __init__(self, key: ECKey, issuer: str, ttl_seconds: int = 3600, cache_size: int = 10_000) -> None:
        self.key = key
        self.issuer = issuer
        self.ttl = ttl_seconds
        self._keys = KeySet([key])
        self._cache: OrderedDict[str, TokenClaims] = OrderedDict()
        self._cache_size = cache_size
        self._registry = JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": SHARE_AUDIENCE},
            exp={"essential": True},
            sub={"essential": True},
        )

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False, use="sig", alg=ALGORITHM)]}

    def issue(
        self,
        client_id: str,
        department: str,
        scopes: list[str],
        subject: str | None = None,
        now: int | None = None,
    ) -> tuple[str, int]:
        now = int(time.time()) if now is None else now
        claims = {
            "iss": self.issuer,
            "sub": subject or client_id,
            "aud": SHARE_AUDIENCE,
            "client_id": client_id,
            "dept": department,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": self.key.kid}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM]), self.ttl

    def verify(self, token: str, now: float | None = None) -> TokenClaims:
        now = time.time() if now is None else now
        hit = self._cache.get(token)
        if hit is not None:
            if hit.expires_at + LEEWAY_SECONDS >= now:
                return hit
            del self._cache[token]
        try:
            decoded = jwt.decode(token, self._keys, algorithms=[ALGORITHM])
            if decoded.header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
                raise InvalidToken("not an access token (typ)")
            self._registry.validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as err:
            raise InvalidToken(type(err).__name__) from None
        c = decoded.claims
        if not isinstance(c.get("dept"), str) or not isinstance(c.get("client_id"), str):
            raise InvalidToken("missing department or client")
        claims = TokenClaims(
            c["client_id"],
            c["dept"],
            frozenset(str(c.get("scope", "")).split()),
            str(c["sub"]),
            int(c["exp"]),
            str(c.get("jti", "")),
        )
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims
