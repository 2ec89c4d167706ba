"""Rate limits and quotas on the open tier, with the `limits` library.

- per API key: a burst limit (requests per minute) and a daily quota, each key may
  override the gateway defaults;
- anonymous callers: a limit per client address;
- the share tier: a limit per OAuth client (`SHUQIAO_SHARE_CLIENT_RATE`, off unless set).

With SHUQIAO_REDIS_URL set, counters live in Redis, so every worker process enforces one
combined limit; otherwise they are in-process. Answers carry RateLimit-Policy / RateLimit
headers (draft-ietf-httpapi-ratelimit-headers) and, when refused, Retry-After."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from redis.exceptions import RedisError

from gateway.outages import RateLimitUnavailable

log = logging.getLogger("shuqiao.ratelimit")

REDIS_TIMEOUT = 1.0  # seconds, to connect to Redis and for each command


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int = 0
    policy: str = ""
    # For a refusal without credentials: whether it is the first of its window, the one the audit
    # log keeps (first_refusal); the others are answered but not recorded.
    record: bool = True


@lru_cache(maxsize=64)
def _parsed(rate: str) -> RateLimitItem:
    return parse(rate)


class _Window(deque[float]):
    """One key's moving window: the times of its counted hits, oldest first."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def prune(self, now: float) -> None:
        """Forget hits older than the window (a hit exactly `seconds` ago still counts against a
        new hit, as in `limits`)."""
        cutoff = now - self.seconds
        while self and self[0] < cutoff:
            self.popleft()


class InProcessStorage(MemoryStorage):
    """The `limits` library's in-process storage with a cheaper moving window.

    The library keeps a key's moving window as a list of entry objects, newest first, and records a
    hit by inserting at the front (a copy of the whole list: at a high limit, tens of thousands of
    entries per request) and sweeps expired entries in a task with one `asyncio.to_thread` hop per
    key (in practice once per hit). Here a window is a deque of hit times, oldest first: a hit
    drops the expired ones from the left and appends on the right, a count is its length. The
    sweep of idle keys runs at most once per SWEEP_SECONDS, inline on the loop (no await inside,
    so no lock is needed). Decisions are the library's: a hit is refused when `limit` hits are
    within the last `expiry` seconds, and refused hits are not counted; counters (fixed windows,
    the daily quota) are the library's own. (At the very instant a hit leaves the window, the
    library's window stats already leave it out while its hit test still counts it; here both
    count it.)"""

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, _Window] = {}  # type: ignore[assignment]  # the library's: lists of entries
        self._next_sweep = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:  # the library's private hook
        self._maybe_sweep()

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self.sweep()

    def moving_hit(self, key: str, limit: int, expiry: int, amount: int = 1) -> tuple[bool, float, int]:
        """Count `amount` hits if the window has room: (allowed, start of the window, hits in it),
        the window as it is after this hit — what `acquire_entry` then `get_moving_window` say."""
        self._maybe_sweep()
        now = time.time()
        window = self.events.get(key)
        if window is None:
            window = self.events[key] = _Window(expiry)
        else:
            window.prune(now)
        allowed = amount <= limit and len(window) + amount <= limit
        if allowed:
            window.extend([now] * amount)
        return allowed, window[0] if window else now, len(window)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self.moving_hit(key, limit, expiry, amount)[0]

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        window = self.events.get(key)
        if not window:
            return now, 0
        window.prune(now)
        return (window[0], len(window)) if window else (now, 0)

    def sweep(self) -> None:
        """Drop expired moving-window entries (and windows left empty) and expired counters."""
        now = time.time()
        for key in list(self.events):
            window = self.events[key]
            window.prune(now)
            if not window:
                del self.events[key]
                self.locks.pop(key, None)
        for key in [k for k, at in self.expirations.items() if at <= now]:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            self.locks.pop(key, None)


@lru_cache(maxsize=4096)
def _key(item: RateLimitItem, ids: tuple[str, ...]) -> str:
    """The library's key for a limit and its identifiers (the same string its strategies use)."""
    return item.key_for(*ids)


def redis_storage(url: str, namespace: str) -> RedisStorage:
    """The library's asyncio Redis storage for SHUQIAO_REDIS_URL, a redis-py URL as the nonce and
    replay caches take it (redis://, rediss://, unix://). Built directly rather than from a scheme
    string: the in-process counters are InProcessStorage, so Redis is the only store named by URL."""
    if url.startswith("unix://"):
        url = "redis+" + url  # the library's name for it (it hands redis-py unix:// again)
    elif not url.startswith(("redis://", "rediss://")):
        raise ValueError("SHUQIAO_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    return RedisStorage(
        url,
        implementation="redispy",
        key_prefix=namespace,
        # an unreachable Redis is refused in a second, not after the OS's TCP timeout
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
    )


class RateLimiter:
    def __init__(
        self,
        redis_url: str | None = None,
        *,
        key_per_minute: int = 120,
        key_per_day: int = 10_000,
        anonymous: str = "60/minute",
        login: str = "30/minute",
        namespace: str = "shuqiao",
        client: str | None = None,
        auth_failures: str = "20/minute",
    ) -> None:
        self.storage: Storage = redis_storage(redis_url, namespace) if redis_url else InProcessStorage()
        self.shared = bool(redis_url)
        # Per-minute limits count the last 60 s exactly: a fixed window lets a client send
        # twice its limit across a boundary (and made limit tests depend on the clock).
        # Daily quotas are calendar-like by nature and stay fixed windows (cheap to store).
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.daily_strategy = FixedWindowRateLimiter(self.storage)
        self.key_per_minute = key_per_minute
        self.key_per_day = key_per_day
        self.anonymous = parse(anonymous)
        self.login = parse(login)
        self.client = parse(client) if client else None
        self.auth_failures = parse(auth_failures)

    async def for_api_key(self, prefix: str, per_minute: int | None, per_day: int | None) -> Decision:
        items = [
            ("burst", RateLimitItemPerMinute(per_minute or self.key_per_minute)),
            ("daily", RateLimitItemPerDay(per_day or self.key_per_day)),
        ]
        return await self._check(items, "key", prefix)

    async def for_address(self, address: str) -> Decision:
        return await self._check([("anonymous", self.anonymous)], "addr", address)

    async def for_budget(self, name: str, rate: str, ident: str) -> Decision:
        """A named budget apart from the API's (the explorer page's own requests, downloads),
        e.g. `for_budget("download", "10/minute", address)`."""
        return await self._check([(name, _parsed(rate))], name, ident)

    async def for_client(self, client_id: str) -> Decision:
        """Share-tier requests per OAuth client (all its tokens together)."""
        if self.client is None:
            return Decision(True)
        return await self._check([("client", self.client)], "client", client_id)

    async def for_login(self, address: str) -> Decision:
        """Sign-in attempts per client address (the per-account lock-out is in users.py)."""
        return await self._check([("login", self.login)], "login", address)

    # ------------------------------------------------ failed authentication, per address
    # Counted only when authentication fails, and tested (not counted) before it is tried, so
    # a caller with good credentials is never slowed by its own successes.

    async def auth_failure_blocked(self, address: str) -> Decision:
        """Refused (with Retry-After) once this address failed `auth_failures` times in the window."""
        item = self.auth_failures
        if await self.strategy.test(item, "authfail", address):
            return Decision(True)
        stats = await self.strategy.get_window_stats(item, "authfail", address)
        reset = max(1, min(item.get_expiry(), math.ceil(stats.reset_time - time.time())))
        headers = {
            "RateLimit-Policy": f'"auth-failures";q={item.amount};w={item.get_expiry()}',
            "RateLimit": f'"auth-failures";r=0;t={reset}',
            "Retry-After": str(reset),
        }
        return Decision(False, headers, reset, "auth-failures")

    async def auth_failed(self, address: str) -> None:
        await self.strategy.hit(self.auth_failures, "authfail", address)

    async def first_refusal(self, address: str, kind: str = "authfail") -> bool:
        """True for the first refused attempt from this address in a window of the `kind` limit
        (failed authentication, or anonymous requests): the one that is recorded, so a refused
        burst adds one audit event, not one per attempt."""
        window = self.anonymous if kind == "anonymous" else self.auth_failures
        once = type(window)(1, window.multiples)
        return await self.daily_strategy.hit(once, f"{kind}-noted", address)

    async def _check(self, items: list[tuple[str, RateLimitItem]], *ids: str) -> Decision:
        try:
            return await self._count(items, *ids)
        except (RedisError, OSError) as err:
            log.warning("rate-limit store unreachable: %s", type(err).__name__)  # its text names the host
            raise RateLimitUnavailable from err

    async def check_store(self) -> bool:
        """For /readyz: can the counters be reached (always, in-process)?"""
        try:
            return bool(await self.storage.check())
        except (RedisError, OSError):
            return False

    async def _count(self, items: list[tuple[str, RateLimitItem]], *ids: str) -> Decision:
        now = time.time()
        policies, states = [], []
        memory = self.storage if type(self.storage) is InProcessStorage else None
        for name, item in items:
            daily = isinstance(item, RateLimitItemPerDay)
            if memory is not None and not daily:
                # the moving window in one synchronous step (InProcessStorage.moving_hit): the
                # same decision and figures as the strategy's hit and window stats below
                allowed, start, hits = memory.moving_hit(_key(item, ids), item.amount, item.get_expiry())
                reset_time, remaining = start + item.get_expiry(), item.amount - hits
            else:
                strategy = self.daily_strategy if daily else self.strategy
                allowed = await strategy.hit(item, *ids)
                stats = await strategy.get_window_stats(item, *ids)
                reset_time, remaining = stats.reset_time, stats.remaining
            reset = min(item.get_expiry(), max(0, math.ceil(reset_time - now)))
            policies.append(f'"{name}";q={item.amount};w={item.get_expiry()}')
            states.append(f'"{name}";r={max(0, remaining)};t={reset}')
            if not allowed:
                headers = {
                    "RateLimit-Policy": ", ".join(f'"{n}";q={i.amount};w={i.get_expiry()}' for n, i in items),
                    "RateLimit": f'"{name}";r=0;t={reset}',
                    "Retry-After": str(max(1, reset)),
                }
                return Decision(False, headers, max(1, reset), name)
        return Decision(True, {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(states)})

    async def reset(self) -> None:
        await self.storage.reset()
