"""Which exceptions mean a dependency is down or saturated (a 503 with Retry-After), as opposed
to a bug (a 500): one reading for the tiers and the failure middleware."""

from __future__ import annotations

import logging
import socket

from asyncpg.exceptions import InsufficientResourcesError, OperatorInterventionError, PostgresConnectionError
from asyncpg.exceptions import InterfaceError as AsyncpgInterfaceError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.problems import (
    BUSY,
    DATABASE_UNAVAILABLE,
    RATE_LIMIT_UNAVAILABLE,
    REDIS_UNAVAILABLE,
    Problem,
)


class RateLimitUnavailable(Exception):
    """The counters' store (Redis) could not be reached: no limit can be enforced, so the
    request is refused with a 503 (fail closed) rather than served unlimited."""


# asyncpg's own errors for a server that is gone, shutting down, starting up (class 57: admin
# shutdown, cannot connect now, a cancelled statement) or out of connections (class 53)
_ASYNCPG_DOWN = (
    PostgresConnectionError,
    AsyncpgInterfaceError,
    OperatorInterventionError,
    InsufficientResourcesError,
)


def classify(err: BaseException) -> Problem | None:
    """The 503 for an exception that means a dependency is down or saturated, else None.

    SQLAlchemy wraps driver errors (`.orig`, `__cause__`); the raw asyncpg path
    (resolvers.sql.fetch_all) raises them bare, and a refused connect is an OSError."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PoolTimeout):
            return BUSY
        if isinstance(current, RateLimitUnavailable):
            return RATE_LIMIT_UNAVAILABLE
        if isinstance(current, RedisConnectionError | RedisTimeoutError):
            return REDIS_UNAVAILABLE
        if isinstance(current, OperationalError | InterfaceError | DisconnectionError):
            return DATABASE_UNAVAILABLE
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return DATABASE_UNAVAILABLE
        if isinstance(current, _ASYNCPG_DOWN) or _network(current):
            return DATABASE_UNAVAILABLE
        current = current.__cause__ or current.__context__
    return None


def _network(err: BaseException) -> bool:
    """A socket that could not connect or was cut (asyncio's "Multiple exceptions" on connect is a
    plain OSError); not a missing file or a permission, which are OSErrors too."""
    return isinstance(err, ConnectionError | TimeoutError | socket.gaierror) or type(err) is OSError


class OutageLog:
    """How a background job reports its failures: a bug with its traceback every time; a
    dependency outage (what `classify` calls one) as one warning when it starts and one line when
    it ends, not a traceback per retry for as long as the database is down."""

    def __init__(self, log: logging.Logger, name: str) -> None:
        self.log = log
        self.name = name
        self.down: str | None = None  # the outage's code while one lasts

    def failed(self, err: BaseException) -> None:
        problem = classify(err)
        if problem is None:
            self.log.error("%s failed", self.name, exc_info=err)
        elif self.down != problem.code:
            self.log.warning("%s: %s (%s); retrying", self.name, problem.code, type(err).__name__)
        self.down = problem.code if problem is not None else self.down

    def succeeded(self) -> None:
        if self.down is not None:
            self.log.warning("%s: recovered after %s", self.name, self.down)
            self.down = None
