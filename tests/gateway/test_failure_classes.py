"""Which exceptions mean "a dependency is down" (503 with Retry-After) and which are a bug (500)."""

from __future__ import annotations

import socket

import pytest
from asyncpg.exceptions import (
    AdminShutdownError,
    CannotConnectNowError,
    ConnectionDoesNotExistError,
    InterfaceError,
    TooManyConnectionsError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.outages import RateLimitUnavailable, classify


def _wrapped(inner: BaseException) -> BaseException:
    """As SQLAlchemy raises a driver error: DBAPIError with `.orig` and `__cause__`."""
    try:
        try:
            raise inner
        except BaseException as err:
            raise DBAPIError("SELECT 1", {}, err) from err
    except DBAPIError as outer:
        return outer


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (PoolTimeout("QueuePool limit"), "SERVICE_BUSY"),
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), "DATABASE_UNAVAILABLE"),
        (ConnectionRefusedError(111, "Connection refused"), "DATABASE_UNAVAILABLE"),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), "DATABASE_UNAVAILABLE"),
        (TimeoutError(), "DATABASE_UNAVAILABLE"),
        (socket.gaierror(-2, "Name or service not known"), "DATABASE_UNAVAILABLE"),
        (
            ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            "DATABASE_UNAVAILABLE",
        ),
        (CannotConnectNowError("the database system is starting up"), "DATABASE_UNAVAILABLE"),
        (InterfaceError("connection is closed"), "DATABASE_UNAVAILABLE"),
        (AdminShutdownError("terminating connection due to administrator command"), "DATABASE_UNAVAILABLE"),
        (TooManyConnectionsError("sorry, too many clients already"), "DATABASE_UNAVAILABLE"),
        (_wrapped(ConnectionDoesNotExistError("closed")), "DATABASE_UNAVAILABLE"),
        (RateLimitUnavailable(), "RATE_LIMIT_UNAVAILABLE"),
        (RedisConnectionError("Error 111 connecting to 10.0.0.9:6379"), "REDIS_UNAVAILABLE"),
    ],
)
def test_a_dependency_down_is_a_503_with_retry_after(err: BaseException, code: str) -> None:
    problem = classify(err)
    assert problem is not None and problem.status == 503 and problem.code == code
    assert int(problem.headers["Retry-After"]) >= 1
    assert "10.0.0.9" not in problem.message  # nothing of the error's text reaches the client


@pytest.mark.parametrize(
    "err",
    [
        RuntimeError("boom"),
        KeyError("x"),
        FileNotFoundError(2, "No such file", "/var/lib/shuqiao/keys/sm2.pem"),  # an OSError, not the network
        PermissionError(13, "Permission denied"),
        _wrapped(ValueError("invalid input syntax")),  # a bad statement, not a lost connection
    ],
)
def test_anything_else_is_not_a_dependency(err: BaseException) -> None:
    assert classify(err) is None
