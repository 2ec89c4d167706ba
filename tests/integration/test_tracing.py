"""Optional OpenTelemetry tracing (SHUQIAO_OTEL): one server span per request, named by route
template, with no query string, variable or credential in it; spans caught by the SDK's
InMemorySpanExporter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import gql

VALUE = "雁塔区TRACE-VALUE-0b7c"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider (set once per process, as OpenTelemetry allows)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="module")
def traced(demo_env: Any, exporter: InMemorySpanExporter) -> Iterator[TestClient]:
    with TestClient(create_app(demo_env.settings.with_(otel=True))) as c:
        yield c


def _server_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def test_one_span_per_request_named_by_route(
    traced: TestClient,
    exporter: InMemorySpanExporter,
    tokens: dict[str, str],
    demo_env: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter.clear()
    caplog.set_level(logging.INFO, logger="shuqiao.http")
    key = demo_env.credentials["api_keys"]["demo-bank"]
    q = "query($d: String) { enterpriseRegistration(first: 1, where: {district: {eq: $d}}) { totalCount } }"
    params = {"query": q, "variables": json.dumps({"d": VALUE})}
    got = traced.get("/open/graphql", params=params, headers={"X-API-Key": key})
    assert got.status_code == 200, got.text
    assert "errors" not in got.json()  # the app still got its query string
    share = gql(traced, "share", "{ population(first: 1) { totalCount } }", token=tokens["hrss"])
    assert share.status_code == 200
    traced.get("/share/subgraphs/hrss.graphql", headers={"Authorization": f"Bearer {tokens['hrss']}"})
    traced.get("/healthz")  # excluded: probes make no spans

    spans = _server_spans(exporter)
    assert [s.name for s in spans] == [
        "GET /open/graphql",
        "POST /share/graphql",
        "GET /share/subgraphs/{department}.graphql",
    ]
    assert spans[1].attributes["http.route"] == "/share/graphql"
    assert spans[1].attributes["shuqiao.tier"] == "share"
    # the access-log line carries the trace id of its span
    lines = {json.loads(r.getMessage())["request_id"]: r for r in caplog.records if r.name == "shuqiao.http"}
    line = json.loads(lines[share.headers["x-request-id"]].getMessage())
    assert line["trace_id"] == format(spans[1].context.trace_id, "032x")
    dumped = json.dumps([{"name": s.name, "attributes": dict(s.attributes)} for s in spans], default=str)
    for secret in (VALUE, key, tokens["hrss"], "enterpriseRegistration", "variables"):
        assert secret not in dumped


def test_off_by_default(demo_env: Any, monkeypatch: pytest.MonkeyPatch, exporter: Any) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    plain = create_app(demo_env.settings)
    assert not any(m.cls is OpenTelemetryMiddleware for m in plain.user_middleware)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    auto = create_app(demo_env.settings)  # an OTLP endpoint turns it on ...
    assert any(m.cls is OpenTelemetryMiddleware for m in auto.user_middleware)
    off = create_app(demo_env.settings.with_(otel=False))  # ... unless SHUQIAO_OTEL=off
    assert not any(m.cls is OpenTelemetryMiddleware for m in off.user_middleware)
