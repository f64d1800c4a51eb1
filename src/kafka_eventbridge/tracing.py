"""Traces: a span per record from consume to resolution, a span per publish call.

The loop calls the hooks of one :class:`Tracing` object at fixed points of a record's path::

    consumed(record) → mapped(record, entry) → publish_started(batch) → publish_finished(batch)
        → resolved(record)                         accepted, or filtered (no entry was mapped)
        → retrying(record, code) ...               an event on the record's span, per retry
        → dead_lettered(record, error) → resolved(record)   at the dead-letter topic's ack

Three implementations, chosen once at start by :func:`build_tracing`:

* :class:`Tracing` itself: every hook does nothing. What runs unless traces or trace headers
  are configured; the per-record cost is a few empty method calls.
* :class:`TraceHeaders`: no spans, but PutEvents entries get an X-Ray ``TraceHeader`` derived
  from the record's W3C ``traceparent`` header (``BRIDGE_EVENTBRIDGE_TRACE_HEADER=traceparent``).
* :class:`OpenTelemetryTracing`: OpenTelemetry spans (the ``otel`` extra), turned on by the
  standard ``OTEL_*`` variables (:func:`otel_configured`). A record's span continues the trace
  of the ``traceparent`` (and ``tracestate``) in its headers; a publish call's span links the
  spans of its entries, which belong to many traces. With trace headers on, an entry's
  ``TraceHeader`` names the record's span as its parent, so the trace goes on from the bridge.

X-Ray's header is W3C's trace context in another spelling (:func:`xray_trace_header`)::

    traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
    TraceHeader: Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1

Spans carry topics, partitions, offsets, codes and counts, never keys or payloads.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kafka_eventbridge import __version__
from kafka_eventbridge.errors import ConfigError, RecordError
from kafka_eventbridge.records import Headers, SourceRecord
from kafka_eventbridge.settings import TraceHeaderSource

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from kafka_eventbridge.batching import Batch
    from kafka_eventbridge.classify import BatchOutcome
    from kafka_eventbridge.mapping import Entry
    from kafka_eventbridge.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = "kafka-eventbridge"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# version-traceid-spanid-flags, lower-case hex (W3C Trace Context, level 1). A future version
# may append fields after the flags; version ff is invalid.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


# -- W3C traceparent → X-Ray TraceHeader ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The part of a W3C ``traceparent`` that X-Ray needs."""

    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits: the parent of whatever comes next
    sampled: bool


def parse_traceparent(value: str | bytes | None) -> TraceContext | None:
    """A ``traceparent`` header value, or None when absent or not valid by W3C's rules."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    match = _TRACEPARENT.fullmatch(text.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _INVALID_TRACE_ID or span_id == _INVALID_SPAN_ID:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1))


def xray_trace_header(context: TraceContext) -> str:
    """X-Ray's ``TraceHeader`` for the same trace: ``Root=1-<8 hex>-<24 hex>`` is the W3C trace
    id cut after eight digits, ``Parent`` the span id, ``Sampled`` the sampled flag."""
    root = f"1-{context.trace_id[:8]}-{context.trace_id[8:]}"
    return f"Root={root};Parent={context.span_id};Sampled={1 if context.sampled else 0}"


def header_value(headers: Headers, name: str) -> bytes | None:
    """The last header of that name (a producer that re-sets a header appends it)."""
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


# -- the hooks -----------------------------------------------------------------------------


class Tracing:
    """The hooks the loop calls; this base does nothing (no traces, no trace headers).

    Every hook is cheap and never raises: tracing must not change what happens to a record.
    """

    enabled = False

    def consumed(self, record: SourceRecord) -> None:
        """A record was taken from Kafka (its span starts)."""

    def mapped(self, record: SourceRecord, entry: Entry) -> None:
        """The record became ``entry`` (may set the entry's ``TraceHeader``)."""

    def resolved(self, record: SourceRecord) -> None:
        """The record is resolved: accepted, filtered, or its dead letter acknowledged."""

    def retrying(self, record: SourceRecord, code: str) -> None:
        """The record's entry failed with a retryable ``code`` and will be sent again."""

    def dead_lettered(self, record: SourceRecord, error: RecordError) -> None:
        """The record goes to the dead-letter topic; :meth:`resolved` follows on its ack."""

    def publish_started(self, batch: Batch) -> None:
        """A publish call for ``batch`` is about to be made."""

    def publish_finished(self, batch: Batch, outcome: BatchOutcome) -> None:
        """The call for ``batch`` completed with ``outcome``."""

    def close(self) -> None:
        """Export what is pending (at shutdown)."""

    def describe(self) -> str:
        """One line for ``check``: what is traced and where it goes."""
        return "off (no OTEL_* variables ask for traces)"


class TraceHeaders(Tracing):
    """No spans; each PutEvents entry gets the X-Ray form of its record's ``traceparent``."""

    def describe(self) -> str:
        return "off; PutEvents TraceHeader from each record's traceparent"

    def mapped(self, record: SourceRecord, entry: Entry) -> None:
        if entry.trace_header is not None:
            return  # a route's trace_header expression wins
        context = parse_traceparent(header_value(record.headers, TRACEPARENT))
        if context is not None:
            entry.trace_header = xray_trace_header(context)


# -- OpenTelemetry -------------------------------------------------------------------------

_OTEL_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_TRUE = frozenset({"true", "1", "yes", "on"})


def otel_configured(environ: Mapping[str, str]) -> bool:
    """Traces are on when the standard variables ask for them, and off otherwise.

    ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn them off; an
    ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``) or an OTLP endpoint
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turn them on.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = _exporter_names(environ)
    if exporters:
        return exporters != ["none"]
    return any(environ.get(name, "").strip() for name in _OTEL_ENDPOINTS)


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    raw = environ.get("OTEL_TRACES_EXPORTER", "")
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


@dataclass(slots=True)
class _RecordSpan:
    """What a record carries (``SourceRecord.span``) while it is traced."""

    span: Span
    mapped: bool = False
    dead: bool = False

    @property
    def outcome(self) -> str:
        """The ``kafka_eventbridge.outcome`` of a resolved record."""
        if self.dead:
            return "dead-letter"
        return "accepted" if self.mapped else "filtered"


class OpenTelemetryTracing(Tracing):
    """Spans through an OpenTelemetry ``TracerProvider`` (built from ``OTEL_*`` by
    :func:`build_tracing`, or given by a test with an in-memory exporter)."""

    enabled = True

    def __init__(
        self,
        provider: TracerProvider,
        *,
        api: str,
        operation: str,
        group_id: str,
        region: str | None = None,
        trace_headers: bool = False,
    ) -> None:
        from opentelemetry import propagate, trace

        self.provider = provider
        self._tracer: Tracer = provider.get_tracer("kafka_eventbridge", __version__)
        self._trace = trace
        self._propagator = propagate.get_global_textmap()
        self._trace_headers = trace_headers
        self._operation = operation
        self._group_id = group_id
        self._call_attributes: dict[str, Any] = {
            "rpc.system": "aws-api",
            "rpc.service": "EventBridge",
            "rpc.method": operation,
            "kafka_eventbridge.api": api,
        }
        if region:
            self._call_attributes["cloud.region"] = region
        self._calls: dict[int, Span] = {}
        self.exporters = "?"

    def describe(self) -> str:
        service = self.provider.resource.attributes.get("service.name")
        headers = "; PutEvents TraceHeader from each record's span" if self._trace_headers else ""
        return f"on: service {service}, export {self.exporters}{headers}"

    # -- records

    def consumed(self, record: SourceRecord) -> None:
        parent = None
        for name, _ in record.headers:
            if name == TRACEPARENT:
                # The headers as text once, for the propagators' several look-ups (traceparent,
                # tracestate, baggage); the last of a repeated header wins.
                carrier = {k: v.decode("latin-1") for k, v in record.headers if v is not None}
                parent = self._propagator.extract(carrier)
                break
        span = self._tracer.start_span(
            f"process {record.topic}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "messaging.consumer.group.name": self._group_id,
                "messaging.message.body.size": len(record.value or b""),
            },
        )
        record.span = _RecordSpan(span)

    def mapped(self, record: SourceRecord, entry: Entry) -> None:
        traced = _traced(record)
        if traced is None:
            return
        traced.mapped = True
        if self._trace_headers and entry.trace_header is None:
            context = traced.span.get_span_context()
            entry.trace_header = xray_trace_header(
                TraceContext(
                    f"{context.trace_id:032x}",
                    f"{context.span_id:016x}",
                    context.trace_flags.sampled,
                )
            )
        if traced.span.is_recording():
            traced.span.set_attribute("aws.eventbridge.detail_type", entry.detail_type)
            traced.span.set_attribute("aws.eventbridge.source", entry.source)

    def retrying(self, record: SourceRecord, code: str) -> None:
        traced = _traced(record)
        if traced is not None:
            traced.span.add_event("retry", {"error.type": code})

    def dead_lettered(self, record: SourceRecord, error: RecordError) -> None:
        traced = _traced(record)
        if traced is None:
            return
        traced.dead = True
        span = traced.span
        span.set_attribute("error.type", error.code)
        span.set_attribute("kafka_eventbridge.error.stage", str(error.stage))
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error.message[:200]))

    def resolved(self, record: SourceRecord) -> None:
        traced = _traced(record)
        if traced is None:
            return
        record.span = None
        traced.span.set_attribute("kafka_eventbridge.outcome", traced.outcome)
        traced.span.end()

    # -- publish calls

    def publish_started(self, batch: Batch) -> None:
        links = [
            self._trace.Link(traced.span.get_span_context())
            for item in batch.items
            if (traced := _traced(item.record)) is not None and traced.span.is_recording()
        ]
        attributes = {**self._call_attributes, "messaging.batch.message_count": len(batch.items)}
        self._calls[id(batch)] = self._tracer.start_span(
            f"EventBridge/{self._operation}",
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            links=links,
        )

    def publish_finished(self, batch: Batch, outcome: BatchOutcome) -> None:
        span = self._calls.pop(id(batch), None)
        if span is None:
            return
        span.set_attribute("kafka_eventbridge.outcome", outcome.label)
        span.set_attribute("kafka_eventbridge.entries.accepted", len(outcome.accepted))
        span.set_attribute(
            "kafka_eventbridge.entries.failed", len(outcome.retry) + len(outcome.dead)
        )
        error = outcome.fatal.code if outcome.fatal is not None else outcome.call_error
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end()

    def close(self) -> None:
        for span in self._calls.values():
            span.end()
        self._calls.clear()
        self.provider.shutdown()


def _traced(record: SourceRecord) -> _RecordSpan | None:
    traced: _RecordSpan | None = record.span
    return traced


# -- construction --------------------------------------------------------------------------


def build_tracing(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    provider: TracerProvider | None = None,
) -> Tracing:
    """The hooks the settings and the ``OTEL_*`` variables ask for.

    ``provider`` replaces the one built from ``OTEL_*`` (tests pass one with an in-memory
    exporter); giving one turns traces on.
    """
    from kafka_eventbridge.publisher import OPERATIONS

    env = os.environ if environ is None else environ
    trace_headers = settings.eventbridge.trace_header is TraceHeaderSource.TRACEPARENT
    if provider is None and not otel_configured(env):
        return TraceHeaders() if trace_headers else Tracing()
    api = settings.eventbridge.api
    tracing = OpenTelemetryTracing(
        provider or otel_provider(env),
        api=api.value,
        operation=OPERATIONS[api],
        group_id=settings.kafka.group_id,
        region=settings.eventbridge.region or env.get("AWS_REGION") or None,
        trace_headers=trace_headers,
    )
    if provider is None:
        tracing.exporters = ", ".join(
            _exporter_label(n, env) for n in _exporter_names(env) or ["otlp"]
        )
    return tracing


def _exporter_label(name: str, environ: Mapping[str, str]) -> str:
    if name != "otlp":
        return name
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not endpoint:
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
        endpoint = base.rstrip("/") + "/v1/traces"
    return f"OTLP/HTTP to {endpoint}"


def otel_provider(environ: Mapping[str, str]) -> TracerProvider:
    """A ``TracerProvider`` as the ``OTEL_*`` variables describe it.

    The SDK reads sampling (``OTEL_TRACES_SAMPLER``), resource (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``), batching (``OTEL_BSP_*``) and the OTLP exporter's endpoint,
    headers, timeout and TLS (``OTEL_EXPORTER_OTLP_*``) itself; this picks the exporters and
    refuses, with a readable line, what this build cannot do.
    """
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            [
                "OTEL_*: traces are configured but OpenTelemetry is not installed "
                "(pip install 'kafka-eventbridge[otel]')"
            ]
        ) from None
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    exporters = [_exporter(name, environ) for name in (_exporter_names(environ) or ["otlp"])]
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    _quiet_sdk_loggers()
    return provider


class _AtMostWarning(logging.Filter):
    """Spans that cannot be exported are the collector's trouble, not the bridge's: the SDK's
    ``error`` lines become warnings, so that an ``error`` line still means the bridge failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_SDK_FILTER = _AtMostWarning()


def _quiet_sdk_loggers() -> None:
    """A logger's filter sees only its own records, so each OpenTelemetry module's logger
    (created when the module was imported, above) gets the filter."""
    names = [name for name in logging.Logger.manager.loggerDict if name.startswith("opentelemetry")]
    for name in names:
        logger = logging.getLogger(name)
        if _SDK_FILTER not in logger.filters:
            logger.addFilter(_SDK_FILTER)


_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigError(
            [f"OTEL_TRACES_EXPORTER: {name!r} is not supported (allowed: otlp, console, none)"]
        )
    protocol = next(
        (environ[v].strip() for v in _PROTOCOLS if environ.get(v, "").strip()), "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise ConfigError(
            [
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; the bridge "
                "exports OTLP as http/protobuf (port 4318 of a collector)"
            ]
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
