"""The identity services one gateway process holds: token issuing and checking, the
revocation list, external issuers, API keys, people, rate limits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.access_log import AccessLog
from gateway.identity.apikeys import ApiKeyVerifier
from gateway.identity.audit import IdentityAudit
from gateway.identity.bearer import BearerProtector
from gateway.identity.external import ExternalIssuers
from gateway.identity.failures import FailureGuard
from gateway.identity.ratelimit import RateLimiter
from gateway.identity.store import IdentityStore, RevocationList
from gateway.identity.tokens import SHARE_AUDIENCE, TokenService
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

    def protector(self, **requirements: Any) -> BearerProtector:
        """The bearer check for one endpoint (gateway.identity.bearer): the only token check."""
        return BearerProtector(self, **requirements)

    @cached_property
    def share_bearer(self) -> BearerProtector:
        """The share tier's: share:read and a department, ours or a trusted issuer's tokens."""
        return self.protector(
            realm="shuqiao",
            audience=SHARE_AUDIENCE,
            scopes=["share:read"],
            external=True,
            need_department=True,
            resource_metadata=f"{self.issuer}/.well-known/oauth-protected-resource",
        )

    @property
    def failures(self) -> FailureGuard:
        """Failed authentication per client address (gateway.identity.failures)."""
        return FailureGuard(self.limiter, self.audit)
