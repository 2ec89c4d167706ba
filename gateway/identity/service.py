"""The identity services one gateway process holds: token issuing and checking, the
revocation list, external issuers, API keys, people, rate limits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.access_log import AccessLog
from gateway.identity.apikeys import ApiKeyVerifier
from gateway.identity.audit import IdentityAudit
from gateway.identity.external import ExternalIssuers
from gateway.identity.failures import FailureGuard
from gateway.identity.ratelimit import RateLimiter
from gateway.identity.store import IdentityStore, RevocationList
from gateway.identity.tokens import InvalidToken, TokenClaims, TokenService, peek_claims, peek_header
from gateway.identity.users import UserService
from gateway.secrets import SecretHasher


class ReplayCache:
    """One-time values (client-assertion jti): Redis SET NX when shared, else in-process."""

    def __init__(self, redis_url: str | None = None, namespace: str = "shuqiao") -> None:
        self._mem: dict[str, float] = {}
        self._redis = None
        self.namespace = namespace
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url)

    async def first_use(self, key: str, exp: int) -> bool:
        ttl = max(60, min(exp - int(time.time()) + 60, 3600))
        if self._redis is not None:
            return bool(await self._redis.set(f"{self.namespace}:jti:{key}", 1, nx=True, ex=ttl))
        now = time.time()
        if len(self._mem) > 100_000:
            self._mem = {k: v for k, v in self._mem.items() if v > now}
        if self._mem.get(key, 0) > now:
            return False
        self._mem[key] = now + ttl
        return True


@dataclass
class Identity:
    issuer: str
    engine: AsyncEngine
    hasher: SecretHasher
    tokens: TokenService
    store: IdentityStore
    revocations: RevocationList
    external: ExternalIssuers
    api_keys: ApiKeyVerifier
    users: UserService
    limiter: RateLimiter
    replay: ReplayCache
    # login and token events go to the audit log (gateway.identity.audit); None: nowhere
    audit: IdentityAudit = field(default_factory=lambda: IdentityAudit(None))

    @classmethod
    def build(
        cls,
        engine: AsyncEngine,
        hasher: SecretHasher,
        tokens: TokenService,
        *,
        api_keys: ApiKeyVerifier | None = None,
        redis_url: str | None = None,
        namespace: str = "shuqiao",
        anonymous_rate: str = "60/minute",
        key_per_minute: int = 120,
        key_per_day: int = 10_000,
        client_rate: str | None = None,
        auth_failure_rate: str = "20/minute",
        audit_log: AccessLog | None = None,
    ) -> Identity:
        store = IdentityStore(engine, hasher)
        return cls(
            issuer=tokens.issuer,
            engine=engine,
            hasher=hasher,
            tokens=tokens,
            store=store,
            revocations=RevocationList(store),
            external=ExternalIssuers(engine),
            api_keys=api_keys or ApiKeyVerifier(engine, hasher),
            users=UserService(engine),
            limiter=RateLimiter(
                redis_url,
                key_per_minute=key_per_minute,
                key_per_day=key_per_day,
                client=client_rate,
                auth_failures=auth_failure_rate,
                anonymous=anonymous_rate,
                namespace=namespace,
            ),
            replay=ReplayCache(redis_url, namespace),
            audit=IdentityAudit(audit_log),
        )

    @property
    def failures(self) -> FailureGuard:
        """Failed authentication per client address (gateway.identity.failures)."""
        return FailureGuard(self.limiter, self.audit)

    async def authenticate_bearer(self, token: str, audience: str | None) -> TokenClaims:
        """Resource-server check of a bearer token: ours (signature, claims, revocation) or
        one from a trusted external issuer. Raises InvalidToken, whose text is for logs."""
        header = peek_header(token)
        unverified = peek_claims(token)
        if unverified.get("iss") == self.tokens.issuer:
            claims = self.tokens.verify(token, audience)
            if await self.revocations.is_revoked(claims.jti):
                raise InvalidToken("revoked")
            return claims
        if audience is not None and audience != "shuqiao:share":
            raise InvalidToken("external tokens reach the share tier only")
        return await self.external.verify(token, header, unverified)
