"""Access tokens: JWTs per RFC 9068 (typ at+jwt), ES256, audience per tier; ID tokens per
OpenID Connect Core.

Validation is strict: one algorithm (alg=none and HMAC-with-our-public-key are refused
before any key is touched), a known key id, issuer, audience, expiry with a small leeway.
Verified tokens are cached until they expire, so the signature check costs once per
token, not once per request; revocation is checked by the caller on every request."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

ALGORITHM = "ES256"
SHARE_AUDIENCE = "shuqiao:share"
ADMIN_AUDIENCE = "shuqiao:admin"
ADMIN_SCOPES = frozenset({"catalog:write", "grants:approve", "audit:read", "enterprise", "admin"})
LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """The token is not acceptable; the message is for logs, never for the client."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    client_id: str
    department: str | None
    scopes: frozenset[str]
    subject: str
    expires_at: int
    jti: str
    roles: frozenset[str] = frozenset()
    audiences: frozenset[str] = frozenset()
    issuer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None  # RFC 8693 `act.sub`: who presents a delegated token (a router)
    parent_jti: str | None = None  # a delegated token dies with the token it was exchanged for
    issued_at: int = 0  # `iat`: a token issued before its client or person was disabled stays dead


def audiences_for(scopes: list[str] | frozenset[str]) -> list[str]:
    """One audience per tier the scopes open: the share tier, the admin API."""
    aud = []
    if "share:read" in scopes:
        aud.append(SHARE_AUDIENCE)
    if ADMIN_SCOPES & set(scopes):
        aud.append(ADMIN_AUDIENCE)
    return aud or [SHARE_AUDIENCE]


def peek_header(token: str) -> dict[str, Any]:
    """The protected header, unverified: only to route a token to its issuer's checks."""
    try:
        head = token.split(".", 1)[0]
        value = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidToken("malformed header") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed header")
    return value


def peek_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a compact JWS")
    try:
        value = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidToken("malformed payload") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed payload")
    return value


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
            aud={"essential": True, "values": [SHARE_AUDIENCE, ADMIN_AUDIENCE]},
            exp={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
        )

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False, use="sig", alg=ALGORITHM)]}

    def issue(
        self,
        client_id: str,
        department: str | None,
        scopes: list[str],
        subject: str | None = None,
        now: int | None = None,
        roles: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        token, _ = self.issue_with_claims(client_id, department, scopes, subject, now, roles, extra)
        return token, self.ttl

    def issue_with_claims(
        self,
        client_id: str,
        department: str | None,
        scopes: list[str],
        subject: str | None = None,
        now: int | None = None,
        roles: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        now = int(time.time()) if now is None else now
        aud = audiences_for(scopes)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject or client_id,
            "aud": aud[0] if len(aud) == 1 else aud,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(16),
        }
        if department:
            claims["dept"] = department
        if roles:
            claims["roles"] = sorted(roles)
        claims.update(extra or {})
        header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": self.key.kid}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM]), claims

    def issue_id_token(
        self,
        *,
        subject: str,
        client_id: str,
        nonce: str | None,
        auth_time: int | None,
        access_token: str | None,
        userinfo: dict[str, Any],
        now: int | None = None,
    ) -> str:
        now = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": client_id,
            "azp": client_id,
            "iat": now,
            "exp": now + min(self.ttl, 3600),
            **userinfo,
        }
        if nonce:
            claims["nonce"] = nonce
        if auth_time:
            claims["auth_time"] = auth_time
        if access_token:
            digest = hashlib.sha256(access_token.encode()).digest()
            claims["at_hash"] = base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": self.key.kid}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM])

    def verified_before(self, token: str) -> bool:
        """Whether `token` is one of ours already verified (and cached): `verify` then only checks
        its expiry and audience again. Liveness is never cached (gateway.identity.bearer.is_live)."""
        return token in self._cache

    def verify(
        self, token: str, audience: str | None = SHARE_AUDIENCE, now: float | None = None
    ) -> TokenClaims:
        """Check one of our access tokens for `audience` (None: any of our audiences)."""
        now = time.time() if now is None else now
        hit = self._cache.get(token)
        if hit is not None:
            if hit.expires_at + LEEWAY_SECONDS < now:
                del self._cache[token]
                raise InvalidToken("expired")
            if audience is not None and audience not in hit.audiences:
                raise InvalidToken("audience")
            return hit
        header = peek_header(token)
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("algorithm not allowed")
        if header.get("kid") != self.key.kid:
            raise InvalidToken("unknown key id")
        try:
            decoded = jwt.decode(token, self._keys, algorithms=[ALGORITHM])
            if str(decoded.header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
                raise InvalidToken("not an access token (typ)")
            self._registry.validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as err:
            raise InvalidToken(type(err).__name__) from None
        claims = claims_from(decoded.claims)
        if audience is not None and audience not in claims.audiences:
            raise InvalidToken("audience")
        if claims.expires_at + LEEWAY_SECONDS < now:
            raise InvalidToken("expired")
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims


def claims_from(c: dict[str, Any]) -> TokenClaims:
    if not isinstance(c.get("client_id"), str):
        raise InvalidToken("missing client_id")
    dept = c.get("dept")
    if dept is not None and not isinstance(dept, str):
        raise InvalidToken("bad department")
    aud = c.get("aud")
    auds = frozenset([aud] if isinstance(aud, str) else [a for a in aud or [] if isinstance(a, str)])
    roles = c.get("roles") or []
    act = c.get("act")
    actor = act.get("sub") if isinstance(act, dict) else None
    if act is not None and not isinstance(actor, str):
        raise InvalidToken("bad act claim")
    return TokenClaims(
        c["client_id"],
        dept,
        frozenset(str(c.get("scope", "")).split()),
        str(c["sub"]),
        int(c["exp"]),
        str(c.get("jti", "")),
        frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset(),
        auds,
        str(c.get("iss", "")),
        actor=actor,
        parent_jti=str(c["parent_jti"]) if isinstance(c.get("parent_jti"), str) else None,
        issued_at=int(c["iat"]) if isinstance(c.get("iat"), int) else 0,
    )
