"""Enterprise API keys: `sq_<prefix>_<secret>`. Shown once; stored as prefix + keyed hash.

A key carries its scopes (the datasets it may use, within the enterprise's grants), an
expiry, and optional rate limit and daily quota. Rotation issues a new key and lets the
old one live on for an overlap window; revocation is immediate (within the verifier's
cache ttl)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import utc_aware
from gateway.identity.models import ApiKey, Enterprise
from gateway.secrets import SecretHasher

KEY_PREFIX = "sq_"


class InvalidApiKey(Exception):
    pass


class ApiKeyError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ApiKeyIdentity:
    prefix: str
    enterprise: str
    datasets: frozenset[str] = frozenset()
    rate_per_minute: int | None = None
    daily_quota: int | None = None


def split_key(key: str) -> tuple[str, str]:
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        raise InvalidApiKey("malformed")
    _, prefix, secret = key.split("_", 2)
    if not prefix or not secret:
        raise InvalidApiKey("malformed")
    return prefix, secret


def describe(row: ApiKey) -> dict[str, object]:
    """What may be shown about a key after creation: never the secret or its hash."""
    now = datetime.now(UTC)
    exp = utc_aware(row.expires_at)
    state = "revoked" if row.revoked_at else ("expired" if exp and exp <= now else "active")
    return {
        "prefix": row.prefix,
        "enterprise": row.enterprise_code,
        "name": row.name,
        "datasets": row.datasets.split(),
        "rate_per_minute": row.rate_per_minute,
        "daily_quota": row.daily_quota,
        "expires_at": exp.isoformat() if exp else None,
        "revoked_at": utc_aware(row.revoked_at).isoformat() if row.revoked_at else None,
        "replaced_by": row.replaced_by,
        "state": state,
    }


async def create_api_key(
    engine: AsyncEngine,
    hasher: SecretHasher,
    enterprise: str,
    name: str = "",
    expires_at: datetime | None = None,
    *,
    datasets: list[str] | None = None,
    rate_per_minute: int | None = None,
    daily_quota: int | None = None,
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
        datasets=" ".join(sorted(set(datasets or []))),
        rate_per_minute=rate_per_minute,
        daily_quota=daily_quota,
    )
    async with AsyncSession(engine) as session:
        if await session.get(Enterprise, enterprise) is None:
            raise ApiKeyError(f"no enterprise {enterprise!r}")
        session.add(row)
        await session.commit()
        await session.refresh(row)
    return key, row


async def _by_prefix(session: AsyncSession, prefix: str) -> ApiKey:
    row = (await session.exec(select(ApiKey).where(col(ApiKey.prefix) == prefix))).one_or_none()
    if row is None:
        raise ApiKeyError(f"no API key with prefix {prefix!r}")
    return row


async def revoke_api_key(engine: AsyncEngine, prefix: str) -> ApiKey:
    async with AsyncSession(engine) as session:
        row = await _by_prefix(session, prefix)
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            session.add(row)
            await session.commit()
            await session.refresh(row)
        return row


async def rotate_api_key(
    engine: AsyncEngine, hasher: SecretHasher, prefix: str, overlap: timedelta = timedelta(hours=24)
) -> tuple[str, ApiKey, ApiKey]:
    """A new key with the old one's scopes and limits; the old one expires after `overlap`."""
    async with AsyncSession(engine) as session:
        old = await _by_prefix(session, prefix)
    if old.revoked_at is not None:
        raise ApiKeyError("a revoked key cannot be rotated")
    key, new = await create_api_key(
        engine,
        hasher,
        old.enterprise_code,
        old.name,
        old.expires_at,
        datasets=old.datasets.split(),
        rate_per_minute=old.rate_per_minute,
        daily_quota=old.daily_quota,
    )
    until = datetime.now(UTC) + overlap
    async with AsyncSession(engine) as session:
        row = await _by_prefix(session, prefix)
        exp = utc_aware(row.expires_at)
        row.expires_at = until if exp is None or exp > until else exp
        row.replaced_by = new.prefix
        session.add(row)
        await session.commit()
        await session.refresh(row)
    return key, new, row


async def list_api_keys(engine: AsyncEngine, enterprise: str | None = None) -> list[ApiKey]:
    async with AsyncSession(engine) as session:
        q = select(ApiKey).order_by(col(ApiKey.id))
        if enterprise:
            q = q.where(col(ApiKey.enterprise_code) == enterprise)
        return list((await session.exec(q)).all())


class ApiKeyVerifier:
    """Checks keys against the database, caching positive answers briefly so a hot key
    costs one hash, not one query, per request; revocation applies within `ttl`."""

    def __init__(self, engine: AsyncEngine, hasher: SecretHasher, ttl: float = 2.0) -> None:
        self.engine = engine
        self.hasher = hasher
        self.ttl = ttl
        self._cache: dict[str, tuple[float, float, ApiKeyIdentity]] = {}

    async def verify(self, key: str) -> ApiKeyIdentity:
        prefix, _ = split_key(key)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now and hit[1] > time.time():
            return hit[2]
        async with AsyncSession(self.engine) as session:
            row = (await session.exec(select(ApiKey).where(col(ApiKey.prefix) == prefix))).one_or_none()
        if row is None or not self.hasher.verify(key, row.secret_hash):
            raise InvalidApiKey("unknown")
        expires = utc_aware(row.expires_at)
        if row.revoked_at is not None or (expires is not None and expires <= datetime.now(UTC)):
            raise InvalidApiKey("revoked or expired")
        ident = ApiKeyIdentity(
            prefix,
            row.enterprise_code,
            frozenset(row.datasets.split()),
            row.rate_per_minute,
            row.daily_quota,
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, expires.timestamp() if expires else float("inf"), ident)
        return ident
