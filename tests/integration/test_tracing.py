"""Traces end to end: the bridge process exports OTLP to a collector the test serves.

Records carry W3C ``traceparent`` headers as an instrumented producer writes them. The bridge
runs with nothing but the standard ``OTEL_*`` variables (and ``BRIDGE_EVENTBRIDGE_TRACE_HEADER``)
set; the loopback collector decodes the OTLP/HTTP protobuf requests with OpenTelemetry's own
protobuf classes.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from kafka_eventbridge_testing import free_port
from kafka_eventbridge_testing.brokers import KafkaBroker
from tests.integration.conftest import Scenario
from tests.integration.support import ids_of, read_all, wait_until

pytestmark = pytest.mark.integration


class Collector:
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) keeping every span."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []  # (resource attributes, span)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def named(self, prefix: str) -> list[Span]:
        with self._lock:
            return [span for _, span in self.spans if span.name.startswith(prefix)]

    def resources(self) -> list[dict[str, Any]]:
        with self._lock:
            return [resource for resource, _ in self.spans]

    def _receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((resource, span) for span in scope_spans.spans)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                collector._receive(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def attributes(span: Span) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as server:
        yield server


def produce_traced(broker: KafkaBroker, topic: str, values: list[bytes]) -> list[str]:
    """One record per value, each with a traceparent of a trace of its own; returns them."""
    producer = Producer(broker.client_config({"linger.ms": 20}))
    parents = []
    for index, value in enumerate(values):
        parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        parents.append(parent)
        headers: list[tuple[str, str | bytes | None]] = [
            ("traceparent", parent.encode()),
            ("tracestate", b"vendor=1"),
        ]
        producer.produce(topic, value, key=str(index).encode(), headers=headers)
    assert producer.flush(30) == 0
    return parents


def test_each_record_continues_its_producers_trace_into_putevents(
    scenario: Scenario, collector: Collector
) -> None:
    broker, fake = scenario.broker, scenario.fake
    name = scenario.topic("traced", partitions=2)
    values = [orjson.dumps({"id": f"t-{i}", "type": "order.created"}) for i in range(12)]
    values.insert(5, b"{not json")
    parents = produce_traced(broker, name, values)
    process = scenario.bridge(
        name,
        BRIDGE_EVENTBRIDGE_API="events",
        BRIDGE_MAP_SOURCE="'shop.orders'",
        BRIDGE_EVENTBRIDGE_TRACE_HEADER="traceparent",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_SERVICE_NAME="orders-bridge",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    wait_until(lambda: fake.stats().entries_accepted >= 12, 60, "12 entries accepted")
    assert len(read_all(broker, scenario.dlq, expected=1)) == 1
    wait_until(lambda: len(collector.named("process ")) >= 13, 30, "13 record spans exported")
    assert process.terminate() == 0  # flushes what is left

    record_spans = {span.trace_id.hex(): span for span in collector.named(f"process {name}")}
    assert set(record_spans) == {parent.split("-")[1] for parent in parents}
    for parent in parents:
        span = record_spans[parent.split("-")[1]]
        assert span.parent_span_id.hex() == parent.split("-")[2]
        assert span.trace_state == "vendor=1"
        assert span.kind == Span.SpanKind.SPAN_KIND_CONSUMER
    outcomes = [attributes(s)["kafka_eventbridge.outcome"] for s in record_spans.values()]
    assert sorted(outcomes) == ["accepted"] * 12 + ["dead-letter"]
    dead = record_spans[parents[5].split("-")[1]]
    assert dead.status.code == Status.StatusCode.STATUS_CODE_ERROR
    assert attributes(dead)["error.type"] == "InvalidJson"
    assert attributes(dead)["kafka_eventbridge.error.stage"] == "decode"

    # Every accepted entry's TraceHeader continues its record's trace, the bridge's span as
    # the parent: X-Ray picks the trace up where the bridge left it.
    headers = {e.detail["id"]: e.entry["TraceHeader"] for e in fake.entries()}
    assert len(headers) == 12
    by_trace = {
        f"Root=1-{t[:8]}-{t[8:]};Parent={s.span_id.hex()};Sampled=1": s
        for t, s in record_spans.items()
    }
    assert set(headers.values()) <= set(by_trace)

    calls = collector.named("EventBridge/PutEvents")
    assert calls
    linked = {link.span_id for call in calls for link in call.links}
    accepted = {s.span_id for s in record_spans.values() if s is not dead}
    assert linked == accepted
    assert sum(attributes(c)["kafka_eventbridge.entries.accepted"] for c in calls) == 12
    assert {r["service.name"] for r in collector.resources()} == {"orders-bridge"}


def test_a_collector_that_is_down_neither_stops_nor_slows_delivery(scenario: Scenario) -> None:
    """Spans that cannot be exported are dropped: records are delivered, shutdown is prompt."""
    fake = scenario.fake
    name = scenario.topic("untraced", partitions=2)
    produce_traced(scenario.broker, name, [orjson.dumps({"id": f"d-{i}"}) for i in range(50)])
    process = scenario.bridge(
        name,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # nothing listens
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
    )
    wait_until(lambda: fake.stats().entries_accepted >= 50, 60, "50 entries accepted")
    time.sleep(1.0)  # let an export fail
    started = time.monotonic()
    assert process.terminate() == 0
    assert time.monotonic() - started < 20

    assert sorted(ids_of(e.detail for e in fake.entries())) == sorted(f"d-{i}" for i in range(50))
    assert not [line for line in process.log_lines() if line.get("level") == "error"]
