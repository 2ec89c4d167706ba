"""Enterprise API keys: `sq_<prefix>_<secret>`. Shown once; stored as prefix + keyed hash."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.identity.models import ApiKey
from gateway.secrets import SecretHasher

KEY_PREFIX = "sq_"


class InvalidApiKey(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ApiKeyIdentity:
    prefix: str
    enterprise: str


def split_key(key: str) -> tuple[str, str]:
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        raise InvalidApiKey("malformed")
    _, prefix, secret = key.split("_", 2)
    if not prefix or not secret:
        raise InvalidApiKey("malformed")
    return prefix, secret


async def create_api_key(
    engine: AsyncEngine,
    hasher: SecretHasher,
    enterprise: str,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[str, ApiKey]:
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = f"{KEY_PREFIX}{prefix}_{secret}"
    row = ApiKey(
        prefix=prefix,
        secret_hash=hasher.hash(key),
        enterprise_code=enterprise,
        name=name,
        expires_at=expires_at,
    )
    async with AsyncSession(engine) as session:
        session.add(row)
        await session.commit()
        await session.refresh(row)
    return key, row


class ApiKeyVerifier:
    """Checks keys against the database, caching positive answers briefly so a hot key
    costs one hash, not one query, per request; revocation applies within `ttl`."""

    def __init__(self, engine: AsyncEngine, hasher: SecretHasher, ttl: float = 5.0) -> None:
        self.engine = engine
        self.hasher = hasher
        self.ttl = ttl
        self._cache: dict[str, tuple[float, ApiKeyIdentity]] = {}

    async def verify(self, key: str) -> ApiKeyIdentity:
        prefix, _ = split_key(key)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        async with AsyncSession(self.engine) as session:
            row = (await session.exec(select(ApiKey).where(ApiKey.prefix == prefix))).scalar_one_or_none()
        if row is None or not self.hasher.verify(key, row.secret_hash):
            raise InvalidApiKey("unknown")
        current = datetime.now(UTC)
        expires = (
            row.expires_at.replace(tzinfo=UTC)
            if row.expires_at and row.expires_at.tzinfo is None
            else row.expires_at
        )
        if row.revoked_at is not None or (expires is not None and expires <= current):
            raise InvalidApiKey("revoked or expired")
        ident = ApiKeyIdentity(prefix, row.enterprise_code)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, ident)
        return ident
