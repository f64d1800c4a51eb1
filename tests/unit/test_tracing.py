"""Traces: spans per record and per publish call, W3C traceparent to X-Ray TraceHeader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kafka_eventbridge.batching import Batch, Pending
from kafka_eventbridge.checks import check_traces
from kafka_eventbridge.classify import BatchOutcome
from kafka_eventbridge.errors import ConfigError, RecordError, Stage
from kafka_eventbridge.mapping import Entry, Mapper, load_routes
from kafka_eventbridge.records import Headers, SourceRecord
from kafka_eventbridge.settings import Api, MappingSettings, Settings, load_settings
from kafka_eventbridge.tracing import (
    OpenTelemetryTracing,
    TraceContext,
    TraceHeaders,
    Tracing,
    build_tracing,
    otel_configured,
    otel_provider,
    parse_traceparent,
    xray_trace_header,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PRODUCER_SPAN}-01"
REQUIRED = {
    "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "BRIDGE_KAFKA_TOPICS": "orders",
    "BRIDGE_KAFKA_GROUP_ID": "orders-bridge",
    "BRIDGE_EVENTBRIDGE_API": "events",
    "BRIDGE_EVENTBRIDGE_REGION": "eu-west-1",
}


def settings(**variables: str) -> Settings:
    return load_settings({**REQUIRED, **variables})


def record(offset: int = 7, headers: Headers | None = None) -> SourceRecord:
    return SourceRecord("orders", 3, offset, 1767225600000, b"k", b'{"id": 1}', headers or [])


def entry(trace_header: str | None = None) -> Entry:
    return Entry("shop", "order.created", '{"id": 1}', None, None, "bus", trace_header, 30)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def tracing(provider: TracerProvider) -> OpenTelemetryTracing:
    built = build_tracing(settings(BRIDGE_EVENTBRIDGE_TRACE_HEADER="traceparent"), {}, provider)
    assert isinstance(built, OpenTelemetryTracing)
    return built


def finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = finished(exporter, name)
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- traceparent and TraceHeader -----------------------------------------------------------


def test_traceparent_becomes_the_xray_trace_header_of_the_same_trace() -> None:
    context = parse_traceparent(TRACEPARENT)

    assert context == TraceContext(TRACE_ID, PRODUCER_SPAN, sampled=True)
    assert xray_trace_header(context) == (
        "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            f"00-{TRACE_ID}-{PRODUCER_SPAN}-00".encode(),
            TraceContext(TRACE_ID, PRODUCER_SPAN, False),
        ),
        (f" 00-{TRACE_ID}-{PRODUCER_SPAN}-03 ", TraceContext(TRACE_ID, PRODUCER_SPAN, True)),
        # A later version may add fields; version 00 may not.
        (f"01-{TRACE_ID}-{PRODUCER_SPAN}-01-xyz", TraceContext(TRACE_ID, PRODUCER_SPAN, True)),
        (f"00-{TRACE_ID}-{PRODUCER_SPAN}-01-xyz", None),
        (f"ff-{TRACE_ID}-{PRODUCER_SPAN}-01", None),
        (f"00-{'0' * 32}-{PRODUCER_SPAN}-01", None),
        (f"00-{TRACE_ID}-{'0' * 16}-01", None),
        (f"00-{TRACE_ID.upper()}-{PRODUCER_SPAN}-01", None),
        ("00-abc-def-01", None),
        (None, None),
    ],
)
def test_traceparent_is_read_by_the_w3c_rules(
    value: str | bytes | None, expected: TraceContext | None
) -> None:
    assert parse_traceparent(value) == expected


def test_trace_headers_only_fill_entries_of_records_that_carry_a_traceparent() -> None:
    hooks = build_tracing(settings(BRIDGE_EVENTBRIDGE_TRACE_HEADER="traceparent"), {})
    assert isinstance(hooks, TraceHeaders)
    traced, untraced, broken = entry(), entry(), entry()

    hooks.mapped(record(headers=[("traceparent", TRACEPARENT.encode())]), traced)
    hooks.mapped(record(), untraced)
    hooks.mapped(record(headers=[("traceparent", b"garbage")]), broken)

    assert traced.trace_header == xray_trace_header(TraceContext(TRACE_ID, PRODUCER_SPAN, True))
    assert untraced.trace_header is None
    assert broken.trace_header is None


def test_a_routes_trace_header_expression_wins_over_the_traceparent(tmp_path: Path) -> None:
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(
        "routes:\n"
        "  - topics: [orders]\n"
        "    source: \"'shop'\"\n"
        "    trace_header: 'headers.\"x-amzn-trace-id\"'\n"
    )
    routes = load_routes(MappingSettings(mapping_file=routes_file), Api.EVENTS, ["orders"])
    mapper = Mapper(routes, api=Api.EVENTS, max_bytes=1_048_576, event_bus="bus")
    headers: Headers = [("traceparent", TRACEPARENT.encode()), ("x-amzn-trace-id", b"Root=1-x")]
    source = record(headers=headers)
    mapped = mapper.map(source)
    assert mapped is not None

    TraceHeaders().mapped(source, mapped)

    assert mapped.trace_header == "Root=1-x"


def test_without_traces_or_trace_headers_the_hooks_do_nothing() -> None:
    hooks = build_tracing(settings(), {})
    source, mapped = record(headers=[("traceparent", TRACEPARENT.encode())]), entry()

    hooks.consumed(source)
    hooks.mapped(source, mapped)
    hooks.resolved(source)

    assert type(hooks) is Tracing
    assert not hooks.enabled
    assert source.span is None
    assert mapped.trace_header is None


def test_trace_headers_are_refused_for_putpartnerevents() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(BRIDGE_EVENTBRIDGE_API="partner", BRIDGE_EVENTBRIDGE_TRACE_HEADER="traceparent")

    assert any(p.startswith("BRIDGE_EVENTBRIDGE_TRACE_HEADER:") for p in caught.value.problems)


# -- the OTEL_* variables ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "bridge"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_traces_are_on_only_when_the_standard_variables_ask(
    environ: dict[str, str], on: bool
) -> None:
    assert otel_configured(environ) is on
    assert build_tracing(settings(), environ).enabled is on


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_an_exporter_this_build_lacks_is_a_readable_refusal(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        otel_provider(environ)

    assert caught.value.problems[0].startswith(f"{variable}: ")


def test_the_service_is_named_unless_otel_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    default = otel_provider({"OTEL_TRACES_EXPORTER": "none"})
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-bridge")
    named = otel_provider({"OTEL_TRACES_EXPORTER": "none"})

    assert default.resource.attributes["service.name"] == "kafka-eventbridge"
    assert named.resource.attributes["service.name"] == "orders-bridge"
    default.shutdown()
    named.shutdown()


# -- record spans --------------------------------------------------------------------------


def test_a_record_span_continues_the_producers_trace_until_the_entry_is_accepted(
    tracing: OpenTelemetryTracing, exporter: InMemorySpanExporter
) -> None:
    source = record(headers=[("traceparent", TRACEPARENT.encode())])
    mapped = entry()

    tracing.consumed(source)
    tracing.mapped(source, mapped)
    assert not exporter.get_finished_spans()  # open until resolved
    tracing.resolved(source)

    span = only(exporter, "process orders")
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PRODUCER_SPAN
    assert span.kind is SpanKind.CONSUMER
    assert attributes(span) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "orders",
        "messaging.destination.partition.id": "3",
        "messaging.kafka.offset": 7,
        "messaging.consumer.group.name": "orders-bridge",
        "messaging.message.body.size": 9,
        "aws.eventbridge.detail_type": "order.created",
        "aws.eventbridge.source": "shop",
        "kafka_eventbridge.outcome": "accepted",
    }
    assert source.span is None
    # The entry's X-Ray parent is the bridge's span, in the producer's trace.
    own = TraceContext(TRACE_ID, f"{span.context.span_id:016x}", sampled=True)
    assert mapped.trace_header == xray_trace_header(own)


def test_a_record_without_a_traceparent_starts_a_trace_and_a_filtered_one_says_so(
    tracing: OpenTelemetryTracing, exporter: InMemorySpanExporter
) -> None:
    source = record()

    tracing.consumed(source)
    tracing.resolved(source)

    span = only(exporter, "process orders")
    assert span.parent is None
    assert attributes(span)["kafka_eventbridge.outcome"] == "filtered"


def test_a_dead_letter_ends_in_error_with_its_code_stage_and_retries(
    tracing: OpenTelemetryTracing, exporter: InMemorySpanExporter
) -> None:
    source = record(headers=[("traceparent", TRACEPARENT.encode())])
    tracing.consumed(source)
    tracing.mapped(source, entry())
    tracing.retrying(source, "ThrottlingException")
    tracing.retrying(source, "InternalFailure")
    tracing.dead_lettered(
        source, RecordError(Stage.RETRIES_EXHAUSTED, "InternalFailure", "gave up")
    )
    assert not exporter.get_finished_spans()  # until the dead-letter topic confirms
    tracing.resolved(source)

    span = only(exporter, "process orders")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "gave up"
    assert attributes(span)["error.type"] == "InternalFailure"
    assert attributes(span)["kafka_eventbridge.error.stage"] == "retries-exhausted"
    assert attributes(span)["kafka_eventbridge.outcome"] == "dead-letter"
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("retry", {"error.type": "ThrottlingException"}),
        ("retry", {"error.type": "InternalFailure"}),
    ]


def test_a_trace_the_producer_did_not_sample_is_not_recorded_but_still_continued(
    tracing: OpenTelemetryTracing, exporter: InMemorySpanExporter
) -> None:
    source = record(headers=[("traceparent", f"00-{TRACE_ID}-{PRODUCER_SPAN}-00".encode())])
    mapped = entry()

    tracing.consumed(source)
    tracing.mapped(source, mapped)
    tracing.resolved(source)

    assert not exporter.get_finished_spans()
    assert mapped.trace_header is not None
    assert mapped.trace_header.startswith("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=")
    assert mapped.trace_header.endswith(";Sampled=0")


# -- publish spans -------------------------------------------------------------------------


def batch_of(tracing: OpenTelemetryTracing, count: int) -> Batch:
    items = []
    for offset in range(count):
        source = record(offset, headers=[("traceparent", TRACEPARENT.encode())])
        tracing.consumed(source)
        items.append(Pending(entry(), source, epoch=1))
    return Batch(("orders", 3), items)


def test_a_publish_call_is_a_client_span_linking_the_spans_of_its_entries(
    tracing: OpenTelemetryTracing, exporter: InMemorySpanExporter
) -> None:
    batch = batch_of(tracing, 3)
    outcome = BatchOutcome(accepted=batch.items[:2], retry=[(batch.items[2], "Throttling")])

    tracing.publish_started(batch)
    tracing.publish_finished(batch, outcome)

    span = only(exporter, "EventBridge/PutEvents")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is None  # its entries belong to many traces: links, not a parent
    linked = {link.context.span_id for link in span.links}
    assert linked == {item.record.span.span.get_span_context().span_id for item in batch.items}
    assert attributes(span) == {
        "rpc.system": "aws-api",
        "rpc.service": "EventBridge",
        "rpc.method": "PutEvents",
        "kafka_eventbridge.api": "events",
        "cloud.region": "eu-west-1",
        "messaging.batch.message_count": 3,
        "kafka_eventbridge.outcome": "partial_failure",
        "kafka_eventbridge.entries.accepted": 2,
        "kafka_eventbridge.entries.failed": 1,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_a_failed_call_is_an_error_span(
    tracing: OpenTelemetryTracing, exporter: InMemorySpanExporter
) -> None:
    batch = batch_of(tracing, 2)
    outcome = BatchOutcome(
        retry=[(item, "ServiceUnavailable") for item in batch.items],
        call_error="ServiceUnavailable",
    )

    tracing.publish_started(batch)
    tracing.publish_finished(batch, outcome)
    tracing.close()

    span = only(exporter, "EventBridge/PutEvents")
    assert span.status.status_code is StatusCode.ERROR
    assert attributes(span)["error.type"] == "ServiceUnavailable"
    assert attributes(span)["kafka_eventbridge.outcome"] == "error"


# -- check ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "detail"),
    [
        ({}, "off (no OTEL_* variables ask for traces)"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_SERVICE_NAME": "b"},
            "on: service b, export OTLP/HTTP to http://collector:4318/v1/traces",
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp,console",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c.example.com/t",
                "OTEL_SERVICE_NAME": "b",
                "BRIDGE_EVENTBRIDGE_TRACE_HEADER": "traceparent",
            },
            "on: service b, export OTLP/HTTP to https://c.example.com/t, console; "
            "PutEvents TraceHeader from each record's span",
        ),
    ],
)
def test_check_reports_the_traces_as_configured(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], detail: str
) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    rows = check_traces(settings(**{k: v for k, v in environ.items() if k.startswith("BRIDGE_")}))

    assert rows == [("traces", ("ok", detail))]


def test_check_fails_traces_this_build_cannot_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")

    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported"):
        check_traces(settings())  # run_checks prints it as a FAIL row
