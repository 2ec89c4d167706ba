"""SHUQIAO_REDIS_URL as redis-py takes it (redis://, rediss://, unix://) gives the rate limiter the
library's asyncio Redis storage: counts shared by every limiter on it, a socket path accepted (it
was refused as an unknown scheme), anything else refused at start."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from limits.aio.storage import RedisStorage

from gateway.identity.ratelimit import RateLimiter
from gateway.outages import RateLimitUnavailable

REDIS = "redis://127.0.0.1:6379/0"


def test_a_redis_url_shares_the_counts() -> None:
    namespace = f"shuqiao-tidy-{uuid.uuid4().hex[:8]}"
    one = RateLimiter(REDIS, anonymous="3/minute", namespace=namespace)
    other = RateLimiter(REDIS, anonymous="3/minute", namespace=namespace)
    assert isinstance(one.storage, RedisStorage) and one.shared

    async def go() -> list[bool]:
        try:
            return [(await limiter.for_address("10.0.0.9")).allowed for limiter in (one, other, one, other)]
        finally:
            await one.reset()

    assert asyncio.run(go()) == [True, True, True, False]


def test_a_unix_socket_url_is_taken_and_an_absent_socket_fails_closed(tmp_path: Path) -> None:
    limiter = RateLimiter(f"unix://{tmp_path / 'redis.sock'}")
    assert isinstance(limiter.storage, RedisStorage)

    async def go() -> None:
        assert not await limiter.check_store()  # /readyz: unreachable
        with pytest.raises(RateLimitUnavailable):
            await limiter.for_address("10.0.0.9")

    asyncio.run(go())


@pytest.mark.parametrize("url", ["memory://", "http://127.0.0.1:6379", "async+redis://127.0.0.1:6379"])
def test_other_urls_are_refused_at_start(url: str) -> None:
    with pytest.raises(ValueError, match="SHUQIAO_REDIS_URL"):
        RateLimiter(url)
