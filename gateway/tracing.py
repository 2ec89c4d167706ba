"""Optional OpenTelemetry tracing: one server span per request (`pip install 'shuqiao[otel]'`).

On when `SHUQIAO_OTEL=on`, or when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and `SHUQIAO_OTEL` is not
`off`; then the app is wrapped in `opentelemetry-instrumentation-asgi`'s `OpenTelemetryMiddleware`.
Spans go to the tracer provider already installed (by `opentelemetry-instrument`, or by code that
set one); with none, and an OTLP endpoint set, an SDK provider exporting over OTLP/HTTP is made
(`opentelemetry-exporter-otlp-proto-http`, configured by the usual `OTEL_*` variables).

What a span may carry: the method, the route template (the span is renamed to it once routing
has happened, so `/share/subgraphs/hrss.graphql` is `/share/subgraphs/{department}.graphql`), the
status, the tier and the error code. Never the query string — a GET on the open tier carries its
query and variables there, so the middleware does not see it — and never the credentials
(`Authorization`, `X-API-Key` and cookies are redacted even if header capture is configured)."""

from __future__ import annotations

import logging
import os
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.request_log import RequestFacts

log = logging.getLogger("shuqiao")

_QUERY = "shuqiao.query_string"
SANITISED_HEADERS = ["authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"]
DEFAULT_EXCLUDED = "/healthz,/readyz,/metrics"


def enabled(setting: bool | None) -> bool:
    """`setting` is SHUQIAO_OTEL: True, False, or None (on if an OTLP endpoint is configured)."""
    if setting is not None:
        return setting
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class _HideQuery:
    """Outside the OpenTelemetry middleware: it sees no query string (so no span has one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "query_string": b"", _QUERY: scope.get("query_string", b"")}
        await self.app(scope, receive, send)


class _RestoreQuery:
    """Inside it: the app gets the query string back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _QUERY in scope:
            scope = {**scope, "query_string": scope[_QUERY]}
            del scope[_QUERY]
        await self.app(scope, receive, send)


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    # The raw path is not a bounded name: the route template replaces this once it is known.
    return scope.get("method", "HTTP"), {}


def _provider() -> Any:
    """The global tracer provider, after making an OTLP one if none is installed."""
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider) or not os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        return current
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-sdk / "
            "opentelemetry-exporter-otlp-proto-http are not installed: no spans are exported"
        )
        return current
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "shuqiao")})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()


def middleware(setting: bool | None) -> list[Middleware]:
    """The tracing middleware, outermost first; none when tracing is off or not installed."""
    if not enabled(setting):
        return []
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError:
        log.warning(
            "tracing is on but opentelemetry-instrumentation-asgi is not installed "
            "(pip install 'shuqiao[otel]'): no spans"
        )
        return []
    return [
        Middleware(_HideQuery),
        Middleware(
            OpenTelemetryMiddleware,
            tracer_provider=_provider(),
            default_span_details=_span_details,
            excluded_urls=os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS", DEFAULT_EXCLUDED),
            http_capture_headers_sanitize_fields=SANITISED_HEADERS,
            exclude_spans=["receive", "send"],
        ),
        Middleware(_RestoreQuery),
    ]


def name_span(facts: RequestFacts) -> None:
    """A request observer (gateway.request_log): the server span gets the route template as its
    name, and the access-log line gets the trace id."""
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.update_name(f"{facts.method} {facts.route}")
    span.set_attribute("http.route", facts.route)
    span.set_attribute("shuqiao.tier", facts.tier)
    if facts.code:
        span.set_attribute("shuqiao.code", facts.code)
    facts.trace_id = format(span.get_span_context().trace_id, "032x")


def observers(setting: bool | None) -> list[Any]:
    if not enabled(setting):
        return []
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return []
    return [name_span]
