"""Prometheus metrics (`prometheus_client`) and `GET /metrics`.

What is measured, and where:
- requests by tier, route template, status and extensions code, and their latency per tier:
  `observe_request`, an observer of `gateway.request_log.RequestLogMiddleware`;
- the audit chain: a request's wait for its event to be committed, each batch transaction and
  its size (`gateway.audit.store`);
- response signing (`gateway.crypto.signing`);
- the document and plan caches (`resolvers.cache_stats`, which imports nothing of ours);
- the database pool: connections configured and checked out (`watch_pool`).

Labels are bounded: route templates (`/share/subgraphs/{department}.graphql`, `(unmatched)` for
a 404), tier names, status codes and error-code constants. No principal, token, key, query or
value is ever a label.

Several worker processes: with `PROMETHEUS_MULTIPROC_DIR` set (an empty directory, before the
workers start) each process writes its samples there and `/metrics`, whichever worker answers
it, reads them all (`prometheus_client.multiprocess`). That is also why the pool gauges follow
the pool's checkout and checkin events rather than being read at scrape time: the worker that
answers a scrape cannot read the other workers' pools.

Who may scrape: `SHUQIAO_METRICS_ALLOW`, networks (CIDR) of the direct peer, 127.0.0.1 and ::1
by default; a request that came through a proxy (it carries `X-Forwarded-For`, `Forwarded` or
`X-Real-IP`) is refused, so a reverse proxy on the same host does not publish the metrics.
`SHUQIAO_METRICS=off` removes the route."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.request_log import RequestFacts

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "shuqiao_http_requests",
    "HTTP requests answered, by tier, route template, status and extensions code.",
    ["tier", "route", "status", "code"],
)
REQUEST_SECONDS = Histogram(
    "shuqiao_http_request_duration_seconds",
    "Time from request to the last byte of the answer, per tier.",
    ["tier"],
    buckets=_LATENCY,
)
AUDIT_APPEND_SECONDS = Histogram(
    "shuqiao_audit_append_seconds",
    "A request's wait for its audit event to be durable (queue and transaction).",
    buckets=_LATENCY,
)
AUDIT_COMMIT_SECONDS = Histogram(
    "shuqiao_audit_commit_seconds",
    "One audit batch: link, insert and commit (group commit).",
    buckets=_LATENCY,
)
AUDIT_BATCH_EVENTS = Histogram(
    "shuqiao_audit_batch_events",
    "Events per audit transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
AUDIT_FAILURES = Counter(
    "shuqiao_audit_commit_failures", "Audit batches that failed (their requests were refused)."
)
SIGNING_SECONDS = Histogram(
    "shuqiao_response_signing_seconds",
    "SM2 signing of one response (RFC 9421), digest included.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
)
POOL_SIZE = Gauge(
    "shuqiao_db_pool_size",
    "Database connections the pools may hold (summed over worker processes).",
    multiprocess_mode="livesum",
)
POOL_CHECKED_OUT = Gauge(
    "shuqiao_db_pool_checked_out",
    "Database connections in use (summed over worker processes).",
    multiprocess_mode="livesum",
)


# The labelled children, kept: `.labels()` takes the metric's lock and builds its key on every
# call. The label values are bounded (see above), so these dicts are too.
_request_counters: dict[tuple[str, str, int, str | None], Any] = {}
_request_histograms: dict[str, Any] = {}


def observe_request(facts: RequestFacts) -> None:
    key = (facts.tier, facts.route, facts.status, facts.code)
    counter = _request_counters.get(key)
    if counter is None:
        counter = _request_counters[key] = REQUESTS.labels(
            facts.tier, facts.route, str(facts.status), facts.code or ""
        )
    counter.inc()
    histogram = _request_histograms.get(facts.tier)
    if histogram is None:
        histogram = _request_histograms[facts.tier] = REQUEST_SECONDS.labels(facts.tier)
    histogram.observe(facts.duration_ms / 1000)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def prepare_multiprocess_dir() -> None:
    """Before the workers start (`shuqiao serve`): the PROMETHEUS_MULTIPROC_DIR exists and holds
    no samples of an earlier run, which would otherwise be added to this one's."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()


# -- the database pool -------------------------------------------------------------------------


def _checked_out(*_args: Any) -> None:
    POOL_CHECKED_OUT.inc()


def _checked_in(*_args: Any) -> None:
    POOL_CHECKED_OUT.dec()


def watch_pool(engine: AsyncEngine) -> None:
    """Count this engine's pool in the pool gauges (at start-up)."""
    pool = engine.sync_engine.pool
    POOL_SIZE.inc(pool.size() if hasattr(pool, "size") else 1)
    event.listen(pool, "checkout", _checked_out)
    event.listen(pool, "checkin", _checked_in)


def unwatch_pool(engine: AsyncEngine) -> None:
    """Stop counting it (at shutdown, once its connections are back)."""
    pool = engine.sync_engine.pool
    POOL_SIZE.dec(pool.size() if hasattr(pool, "size") else 1)
    for name, fn in (("checkout", _checked_out), ("checkin", _checked_in)):
        if event.contains(pool, name, fn):
            event.remove(pool, name, fn)
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(os.getpid())  # this worker's live gauges leave the sums


# -- GET /metrics --------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_ALLOW = ("127.0.0.1/32", "::1/128")
_FORWARDED = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


class MetricsEndpoint:
    def __init__(self, allow: Sequence[str] = DEFAULT_ALLOW) -> None:
        self.allow: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow)

    def allowed(self, request: Request) -> bool:
        if any(name in _FORWARDED for name, _ in request.scope.get("headers", ())):
            return False
        if request.client is None:
            return False
        try:
            peer = ipaddress.ip_address(request.client.host)
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in net for net in self.allow)

    async def handle(self, request: Request) -> Response:
        from gateway.problems import Problem, problem_response

        if not self.allowed(request):
            return problem_response(
                Problem(403, "Metrics are served only to SHUQIAO_METRICS_ALLOW.", "FORBIDDEN")
            )
        registry: CollectorRegistry = REGISTRY
        if multiprocess():
            from prometheus_client import multiprocess as mp

            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)
        encode, media = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), media_type=media, headers={"Cache-Control": "no-store"})


def routes(enabled: bool, allow: Sequence[str] = DEFAULT_ALLOW) -> list[Route]:
    return [Route("/metrics", MetricsEndpoint(allow).handle)] if enabled else []
