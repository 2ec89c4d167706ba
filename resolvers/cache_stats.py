"""Hits and misses of the per-schema caches (parsed documents, operation plans), as Prometheus
counters: `prometheus_client` writes them per process, or to PROMETHEUS_MULTIPROC_DIR when the
gateway runs several workers, and `GET /metrics` (gateway.metrics) exposes them."""

from __future__ import annotations

from prometheus_client import Counter

CACHE_REQUESTS = Counter(
    "shuqiao_query_cache_requests",
    "Lookups in the document cache (parse + validate) and the plan cache, by result.",
    ["cache", "result"],
)
DOCUMENT_HIT = CACHE_REQUESTS.labels("document", "hit")
DOCUMENT_MISS = CACHE_REQUESTS.labels("document", "miss")
PLAN_HIT = CACHE_REQUESTS.labels("plan", "hit")
PLAN_MISS = CACHE_REQUESTS.labels("plan", "miss")
