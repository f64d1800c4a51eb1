"""What traces cost the main loop, per record: off, trace headers only, OpenTelemetry on.

The loop of ``benchmarks.micro`` (``Bridge.submit``, sending, settling, the watermark) on real
``confluent_kafka.Message`` objects carrying a ``traceparent``, PutEvents, with the publisher
replaced by one that accepts every entry at once, under four tracing setups:

``off``            no ``OTEL_*`` variables and no trace headers: the hooks are empty calls.
``trace-headers``  ``BRIDGE_EVENTBRIDGE_TRACE_HEADER=traceparent`` without spans.
``otel-sampled``   OpenTelemetry, every record's span recorded and exported (batch processor,
                   to an exporter that drops them: the SDK's cost, not a collector's).
``otel-unsampled`` OpenTelemetry, the producer's traceparent says "not sampled", so the
                   parent-based sampler records nothing (the cost of sampling a trace out).

Process CPU (so the span processor's export thread counts), medians of ``--repeat``.
Run as ``python -m benchmarks.tracing``.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Message
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from benchmarks.micro import TOPIC, Headers, _InstantPublisher, drive, messages
from benchmarks.workload import PARTITIONS
from kafka_eventbridge.app import Bridge
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.settings import load_settings
from kafka_eventbridge.tracing import Tracing, build_tracing


class _Discard(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _traced(count: int, sampled: bool) -> list[Message]:
    """Records each carrying a producer's ``traceparent`` of its own."""
    flags = "01" if sampled else "00"

    def traceparent(_: int) -> Headers:
        parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{flags}"
        return [("traceparent", parent.encode())]

    return messages(count, traceparent)


ENV = {
    "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "BRIDGE_KAFKA_TOPICS": TOPIC,
    "BRIDGE_EVENTBRIDGE_API": "events",
    "BRIDGE_MAP_SOURCE": "'shop.orders'",
    "BRIDGE_MAP_DETAIL_TYPE": "value.type || topic",
    "BRIDGE_EVENTBRIDGE_REGION": "us-east-1",
}


def _provider(exporter: _Discard) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    return provider


SETUPS: dict[str, Callable[[], tuple[dict[str, str], Tracing, bool]]] = {
    "off": lambda: (ENV, build_tracing(load_settings(ENV), {}), True),
    "trace-headers": lambda: (
        {**ENV, "BRIDGE_EVENTBRIDGE_TRACE_HEADER": "traceparent"},
        build_tracing(load_settings({**ENV, "BRIDGE_EVENTBRIDGE_TRACE_HEADER": "traceparent"}), {}),
        True,
    ),
    "otel-sampled": lambda: (
        ENV,
        build_tracing(load_settings(ENV), {}, _provider(_Discard())),
        True,
    ),
    "otel-unsampled": lambda: (
        ENV,
        build_tracing(load_settings(ENV), {}, _provider(_Discard())),
        False,
    ),
}


def us_per_record(setup: str, count: int = 20_000, chunk: int = 500) -> float:
    env, tracing, sampled = SETUPS[setup]()
    bridge = Bridge(load_settings(env), tracing=tracing)
    bridge.partitions_assigned([(TOPIC, p) for p in range(PARTITIONS)])
    publisher: Any = _InstantPublisher(bridge.publisher.max_in_flight)
    bridge.publisher = publisher
    records = _traced(count, sampled)
    started = time.process_time()
    drive(bridge, records, chunk)
    tracing.close()  # export what is queued: part of the cost
    spent = time.process_time() - started
    assert bridge.tracker.unresolved() == 0
    bridge.dead_letters.close(0)
    return spent / count * 1e6


def off_hooks_ns_per_record(count: int = 200_000) -> float:
    """The hooks alone, as the loop calls them for one record when tracing is off."""
    tracing = build_tracing(load_settings(ENV), {})
    record = SourceRecord(TOPIC, 0, 0, None, None, b"{}", [])
    entry = Entry("shop.orders", "t", "{}", None, None, None, None, 10)
    started = time.perf_counter()
    for _ in range(count):
        tracing.consumed(record)
        tracing.mapped(record, entry)
        tracing.resolved(record)
    return (time.perf_counter() - started) / count * 1e9


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracing")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    logging.disable(logging.CRITICAL)  # the dead-letter producer has no broker to talk to
    hooks = statistics.median(off_hooks_ns_per_record() for _ in range(args.repeat))
    print(f"the three per-record hooks, tracing off: {hooks:.0f} ns per record (wall)")
    baseline = None
    for setup in SETUPS:
        runs = [us_per_record(setup, args.records) for _ in range(args.repeat)]
        median = statistics.median(runs)
        baseline = baseline or median
        print(
            f"{setup:>15}: {median:5.1f} us CPU per record ({median - baseline:+5.1f} vs off; "
            f"runs {', '.join(f'{r:.1f}' for r in runs)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
