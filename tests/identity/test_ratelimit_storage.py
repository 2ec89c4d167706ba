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
