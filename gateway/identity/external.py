"""External OpenID providers whose access tokens the share tier accepts.

Each trusted issuer is configured with its discovery URL, the audience its tokens must
name, and a claim mapping (which claim names the department and the roles, and how claim
values map to our department codes). Keys come from the provider's JWKS, cached; an
unknown kid refreshes them, at most once per `refresh_interval` per issuer, so a flood of
tokens with made-up kids cannot turn us into a traffic amplifier."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.identity.models import TrustedIssuer
from gateway.identity.roles import InvalidScope, token_scopes
from gateway.identity.tokens import LEEWAY_SECONDS, SHARE_AUDIENCE, InvalidToken, TokenClaims

log = logging.getLogger("shuqiao.identity")
ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    ):
        return
    raise ValueError(f"{url}: an identity provider must be reached over https")


@dataclass
class _Provider:
    cfg: TrustedIssuer
    jwks_uri: str | None = None
    keys: KeySet | None = None
    fetched_at: float = 0.0
    kids: set[str] = field(default_factory=set)


class ExternalIssuers:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        refresh_interval: float = 30.0,
        jwks_ttl: float = 3600.0,
        config_ttl: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.engine = engine
        self.refresh_interval = refresh_interval
        self.jwks_ttl = jwks_ttl
        self.config_ttl = config_ttl
        self.transport = transport
        self._providers: dict[str, _Provider] = {}
        self._loaded_at = -1e9
        self.fetches = 0  # JWKS downloads, for tests and metrics

    async def _load(self) -> None:
        if time.monotonic() - self._loaded_at < self.config_ttl:
            return
        async with AsyncSession(self.engine) as s:
            rows = (await s.exec(select(TrustedIssuer).where(col(TrustedIssuer.enabled)))).all()
        fresh = {}
        for row in rows:
            old = self._providers.get(row.issuer)
            if old is not None and old.cfg.discovery_url == row.discovery_url:
                old.cfg = row
                fresh[row.issuer] = old
            else:
                fresh[row.issuer] = _Provider(row)
        self._providers = fresh
        self._loaded_at = time.monotonic()

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    async def _get(self, url: str) -> Any:
        _check_url(url)
        async with httpx.AsyncClient(timeout=5, transport=self.transport, follow_redirects=False) as http:
            r = await http.get(url, headers={"Accept": "application/json"})
            r.raise_for_status()
            return r.json()

    async def _refresh_keys(self, p: _Provider) -> None:
        now = time.monotonic()
        if p.keys is not None and now - p.fetched_at < self.refresh_interval:
            return  # rate limit: at most one refresh per interval
        p.fetched_at = now
        try:
            if p.jwks_uri is None:
                meta = await self._get(p.cfg.discovery_url)
                if meta.get("issuer") != p.cfg.issuer:
                    raise ValueError("discovery document names another issuer")
                p.jwks_uri = str(meta["jwks_uri"])
            doc = await self._get(p.jwks_uri)
            self.fetches += 1
            keys = [k for k in doc.get("keys", []) if k.get("use", "sig") == "sig" and "kid" in k]
            p.keys = KeySet.import_key_set({"keys": keys})
            p.kids = {k["kid"] for k in keys}
        except (httpx.HTTPError, ValueError, KeyError, TypeError, JoseError) as err:
            log.warning("could not refresh keys of %s: %s", p.cfg.issuer, err)

    async def verify(self, token: str, header: dict[str, Any], unverified: dict[str, Any]) -> TokenClaims:
        await self._load()
        p = self._providers.get(str(unverified.get("iss")))
        if p is None:
            raise InvalidToken("untrusted issuer")
        cfg = p.cfg
        algs = [a for a in cfg.algorithms.split() if a in ASYMMETRIC]
        if header.get("alg") not in algs:
            raise InvalidToken("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("no key id")
        if kid not in p.kids or p.keys is None or time.monotonic() - p.fetched_at > self.jwks_ttl:
            await self._refresh_keys(p)
        if kid not in p.kids or p.keys is None:
            raise InvalidToken("unknown key id")
        try:
            decoded = jwt.decode(token, p.keys, algorithms=algs)
            JWTClaimsRegistry(
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": cfg.issuer},
                aud={"essential": True, "value": cfg.audience},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as err:
            raise InvalidToken(type(err).__name__) from None
        return self._map(cfg, decoded.claims)

    @staticmethod
    def _map(cfg: TrustedIssuer, c: dict[str, Any]) -> TokenClaims:
        mapping: dict[str, str] = orjson.loads(cfg.department_map or "{}")
        raw = c.get(cfg.department_claim)
        dept = mapping.get(raw) if isinstance(raw, str) else None
        if dept is None:
            raise InvalidToken("department claim not mapped")
        roles_raw = c.get(cfg.roles_claim)
        # a token that names roles gets no more than those roles allow; one without gets
        # what the issuer is configured for
        roles = frozenset(r for r in roles_raw if isinstance(r, str)) if isinstance(roles_raw, list) else None
        asked = c.get("scope")
        try:
            scopes = token_scopes(
                asked if isinstance(asked, str) else None, registered=cfg.scopes, roles=roles
            )
        except InvalidScope:
            scopes = frozenset()  # a valid token that may do nothing: 403 insufficient_scope
        client = c.get("client_id") or c.get("azp") or c["sub"]
        return TokenClaims(
            client_id=f"{cfg.issuer}#{client}",
            department=dept,
            scopes=frozenset(scopes),
            subject=str(c["sub"]),
            expires_at=int(c["exp"]),
            jti=str(c.get("jti", "")),
            roles=roles or frozenset(),
            audiences=frozenset({SHARE_AUDIENCE}),
            issuer=cfg.issuer,
            issued_at=int(c["iat"]) if isinstance(c.get("iat"), int) else 0,
        )
