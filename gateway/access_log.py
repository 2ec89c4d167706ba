"""The access event every GraphQL request produces, and where it goes.

`AccessEvent` is the record the audit log stores; `AccessLog.record` is awaited before
a response leaves, so a sink that cannot write stops the data (fail closed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, Protocol, TypeGuard, runtime_checkable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.client_address import client_address
from gateway.outages import classify
from gateway.problems import AUDIT_UNAVAILABLE, JSON, problem_response
from gateway.request_log import note_event
from keys.sm3 import sm3
from policies.model import Tier
from resolvers.context import ANONYMOUS

log = logging.getLogger("shuqiao.access")


@dataclass
class AccessEvent:
    request_id: str
    tier: str
    principal_kind: str
    principal_id: str  # client id or API-key prefix, never a secret
    consumer: str | None
    client_address: str | None
    operation_name: str | None
    operation_type: str | None
    query_digest: str | None  # SM3 of the query text and variables; the values themselves are not logged
    status: int
    error_codes: list[str]
    latency_ms: float
    fields: list[dict[str, Any]] = field(default_factory=list)
    reads: list[dict[str, Any]] = field(default_factory=list)
    subject: str | None = None  # the person behind the token, when there is one
    signature_kid: str | None = None  # key id of the response signature, when the response is signed
    # The request's variables (they may carry ID numbers): the chained store seals them with SM4,
    # the logging sink drops them. Never put them anywhere else.
    variables: dict[str, Any] | None = field(default=None, repr=False)


def query_digest(query: str | None, variables: dict[str, Any] | None) -> str | None:
    if query is None:
        return None
    payload = query.encode() + b"\x00" + orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
    return sm3(payload).hex()


class AccessLog(Protocol):
    async def record(self, event: AccessEvent) -> None: ...


@runtime_checkable
class QueueingAccessLog(AccessLog, Protocol):
    """A sink that queues (the chained store's group commit, gateway.audit.store.ChainedAuditLog):
    `submit` queues the event at once and returns what to await, settled once the event is
    durable or failed with the error of the transaction that held it."""

    def submit(self, event: AccessEvent) -> Awaitable[None]: ...


def queues(sink: AccessLog) -> TypeGuard[QueueingAccessLog]:
    """Whether `sink` is a `QueueingAccessLog`, decided once per sink type (a protocol isinstance
    costs microseconds, and every audited answer asks)."""
    return _queueing_type(type(sink))


@cache
def _queueing_type(cls: type) -> bool:
    return issubclass(cls, QueueingAccessLog)


_EVENT_FIELDS = tuple(f.name for f in fields(AccessEvent))


class LoggingAccessLog:
    """Structured JSON lines on the `shuqiao.access` logger."""

    async def record(self, event: AccessEvent) -> None:
        note_event(event)  # the request's access-log line names its principal and code
        # A shallow dict: dataclasses.asdict deep-copies every nested list, which cost more
        # than the whole query on a cached lookup.
        doc = {name: getattr(event, name) for name in _EVENT_FIELDS}
        doc.pop("variables", None)  # may carry ID numbers; only the sealed chain store keeps them
        log.info("%s", orjson.dumps(doc).decode())


async def answer_once_recorded(
    sink: AccessLog,
    event: AccessEvent,
    response: Response,
    media: str = JSON,
    meanwhile: Callable[[Response], None] | None = None,
) -> Response:
    """Fail closed, the one way every audited endpoint does it: `response` leaves only once its
    event is recorded. If it cannot be, the client gets AUDIT_UNAVAILABLE instead — unless the
    answer was already a 5xx refusal, which serves no data and whose reason (a database that is
    down…) stands.

    `meanwhile(response)` (it must not raise): work on the answer done while the event is being
    written, e.g. signing it (gateway.crypto.signing.PRESIGN). With a sink that queues (a
    `QueueingAccessLog`) the event is queued first, so that work overlaps the batch's commit; the
    answer is still returned only once the commit is durable."""
    try:
        if queues(sink):
            committed = sink.submit(event)
            if meanwhile is not None:
                # One turn of the loop first: a writer that was idle starts now and sends the
                # batch, so the work below runs while it commits instead of delaying it.
                await asyncio.sleep(0)
                meanwhile(response)
            await committed  # raises if the transaction holding the event failed
        else:
            if meanwhile is not None:
                meanwhile(response)
            await sink.record(event)
    except Exception as err:
        if classify(err) is not None:  # the store is down: one line, not a traceback per request
            log.warning("request %s: access log unavailable (%s)", event.request_id, type(err).__name__)
        else:
            log.exception("request %s: access log write failed; answer withheld", event.request_id)
        if response.status_code >= 500:
            return response
        return problem_response(AUDIT_UNAVAILABLE, media)
    return response


def anonymous_read_event(
    request: Request, operation: str, status: int, codes: list[str], started: float
) -> AccessEvent:
    """The event of an anonymous read of the open catalogue outside GraphQL (the explorer's
    catalogue and search, CKAN, DCAT): who asked is only an address."""
    return AccessEvent(
        request_id=getattr(request.state, "request_id", ""),
        tier=Tier.OPEN.value,
        principal_kind=ANONYMOUS.kind.value,
        principal_id=ANONYMOUS.id,
        consumer=None,
        client_address=client_address(request),
        operation_name=operation,
        operation_type="query",
        query_digest=None,
        status=status,
        error_codes=codes,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )
