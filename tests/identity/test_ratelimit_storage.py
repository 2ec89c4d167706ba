"""The in-process rate-limit storage decides exactly as the library's and cleans up without
thread hops: expired entries go in a sweep on the event loop, at most once a second."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from limits import RateLimitItemPerMinute

from gateway.identity.ratelimit import InProcessStorage, RateLimiter


def _no_threads(*_: Any, **__: Any) -> Any:
    raise AssertionError("the in-process limiter must not hop to a thread")


def test_moving_window_limit_without_thread_hops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "to_thread", _no_threads)
    limiter = RateLimiter(anonymous="3/minute")
    assert isinstance(limiter.storage, InProcessStorage)

    async def go() -> list[bool]:
        return [(await limiter.for_address("10.0.0.1")).allowed for _ in range(4)]

    assert asyncio.run(go()) == [True, True, True, False]


def test_sweep_frees_expired_entries_and_counters_only(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = InProcessStorage()
    item = RateLimitItemPerMinute(5)

    async def hits() -> None:
        for ident in ("old", "new"):
            assert await storage.acquire_entry(ident, item.amount, item.get_expiry())
        await storage.incr("counter", 60)

    asyncio.run(hits())
    real = time.time
    # an hour on: the entries of "old" are expired; add a fresh one for "new"
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    asyncio.run(storage.acquire_entry("new", item.amount, item.get_expiry()))
    storage.sweep()
    assert "old" not in storage.events and "counter" not in storage.storage
    assert len(storage.events["new"]) == 1  # the expired entry went, the fresh one stayed


def test_moving_window_decides_as_the_library_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same hits at the same times, against the library's own in-process storage and ours:
    the same decisions, window starts and counts (refused hits are not counted), through the
    strategy and through the limiter's one-step path."""
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    theirs, ours = MovingWindowRateLimiter(MemoryStorage()), MovingWindowRateLimiter(InProcessStorage())
    fast = InProcessStorage()
    item = RateLimitItemPerMinute(3)
    # (never exactly a window after a hit: at that instant the library's stats and hit test disagree)
    steps = [0, 1, 2, 3, 10, 59, 59.99, 60.5, 61.5, 62.5, 119, 120.7, 121.7]
    steps += [200, 200, 200, 200, 259.999, 260.01, 320]

    async def go() -> list[tuple[Any, ...]]:
        seen = []
        for at in steps:
            clock[0] = 1_000_000.0 + at
            a = await theirs.hit(item, "x")
            sa = await theirs.get_window_stats(item, "x")
            b = await ours.hit(item, "x")
            sb = await ours.get_window_stats(item, "x")
            c, start, hits = fast.moving_hit(item.key_for("x"), item.amount, item.get_expiry())
            assert (a, sa.reset_time, sa.remaining) == (b, sb.reset_time, sb.remaining), at
            assert (a, sa.reset_time, sa.remaining) == (c, start + 60, 3 - hits), at
            assert await theirs.test(item, "x") == await ours.test(item, "x")
            seen.append((at, a, sa.remaining))
        return seen

    seen = asyncio.run(go())
    assert [a for _, a, _ in seen[:5]] == [True, True, True, False, False]
    assert sum(a for _, a, _ in seen) < len(steps)  # refusals happened in between


def test_limiter_headers_with_the_one_step_path() -> None:
    limiter = RateLimiter(anonymous="2/minute")

    async def go() -> list[Any]:
        return [await limiter.for_address("10.0.0.9") for _ in range(3)]

    first, second, third = asyncio.run(go())
    assert first.headers == {"RateLimit-Policy": '"anonymous";q=2;w=60', "RateLimit": '"anonymous";r=1;t=60'}
    assert second.headers["RateLimit"] == '"anonymous";r=0;t=60'
    assert not third.allowed and third.retry_after == 60 and third.headers["Retry-After"] == "60"
