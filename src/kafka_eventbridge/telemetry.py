"""Telemetry: every metric, the HTTP endpoints, and logging, in one place.

Metrics follow Prometheus naming (prefix ``kafka_eventbridge_``, ``_total`` counters,
``_seconds`` and ``_bytes`` base units). Labelled counters are created at zero for every
label value known in advance (error codes, stages, outcomes), so that ``increase()`` sees
the first burst instead of a series that appears already at its first value. The standard
process, platform and garbage-collector collectors are registered too: memory, CPU and
file descriptors are part of what an operator watches on a bounded-memory daemon.

Probes (:class:`Health`), as Kubernetes reads them:

* ``/healthz`` (liveness and start-up): fails while the bridge is still starting (settings,
  credentials, dead-letter topic, subscription), then whenever the main loop has not turned
  for ``BRIDGE_HEALTH_STALL_SECONDS``. The chart's ``startupProbe`` covers the start-up, so a
  slow start (an MSK IAM token, a Schema Registry, topic checks) is not killed by liveness.
* ``/readyz``: ready when started, a member of the consumer group (the first assignment
  callback, empty or not: a standby replica is healthy capacity), not shutting down and not
  fatal. Partitions are not part of it: ``assigned_partitions`` says how many there are.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

from kafka_eventbridge import __version__
from kafka_eventbridge.classify import CALL_CODES, ENTRY_CODES, Kind
from kafka_eventbridge.errors import Stage

PREFIX = "kafka_eventbridge"
# A bucket bound as prometheus_client's own histograms write it (untyped in the library).
_le = cast(Callable[[float], str], floatToGoString)

# Label values known before the first event, created at zero (see the module docstring).
PUBLISH_OUTCOMES = ("success", "partial_failure", "error", "invalid_response")
COMMIT_RESULTS = ("success", "failure")
REBALANCE_EVENTS = ("assigned", "revoked", "lost", "rewound")
RETRY_REASONS = tuple(
    sorted(
        {c for c, k in ENTRY_CODES.items() if k is Kind.RETRYABLE}
        | {c for c, k in CALL_CODES.items() if k is Kind.RETRYABLE}
        | {"OrderKept"}  # accepted, sent again behind an earlier failed entry (ordered mode)
    )
)
ENTRY_FAILURE_CODES = tuple(sorted(c for c, k in ENTRY_CODES.items() if k is not Kind.FATAL))
# Peers besides Kafka and EventBridge whose failures an operator must see before they turn
# fatal or stall delivery.
DEPENDENCIES = ("s3_offload", "schema_registry", "dead_letter_producer")
# Why records were abandoned unresolved (redelivered to the next owner).
ABANDON_REASONS = ("shutdown", "revoke")

# Record timestamp to accepted: from milliseconds (a live stream) to hours (a backlog).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """The bridge's metrics, registered in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=r)

        # The collectors prometheus_client registers in its default registry, here too.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        self.records_consumed = counter(
            "records_consumed", "Records consumed from Kafka.", ("topic",)
        )
        self.records_filtered = counter(
            "records_filtered", "Records skipped on purpose (filter, tombstone).", ("topic",)
        )
        self.entries_published = counter(
            "entries_published", "Entries EventBridge accepted.", ("topic",)
        )
        self.entry_failures = counter(
            "entry_failures", "Entries EventBridge failed, by error code.", ("code",)
        )
        self.dead_letters = counter(
            "dead_letters", "Records delivered to the dead-letter topic, by stage.", ("stage",)
        )
        self.publish_requests = counter(
            "publish_requests", "Publish calls, by outcome.", ("outcome",)
        )
        self.retries = counter("retries", "Entries scheduled for another attempt.", ("reason",))
        self.invalid_responses = counter(
            "invalid_responses",
            "2xx publish answers without one result per entry (not counted as delivered).",
        )
        self.commits = counter("commits", "Offset commits, by result.", ("result",))
        self.rebalances = counter("rebalances", "Partition assignment changes.", ("event",))
        self.publish_duration = Histogram(
            f"{PREFIX}_publish_duration_seconds",
            "Duration of publish calls, by outcome.",
            ("outcome",),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.end_to_end_latency = LoopHistogram(
            f"{PREFIX}_end_to_end_latency_seconds",
            "From the record's Kafka timestamp to EventBridge accepting its entry.",
            LATENCY_BUCKETS,
            r,
        )
        self.oldest_unresolved_age = gauge(
            "oldest_unresolved_age_seconds",
            "Seconds the oldest unresolved record has held back its partition's commit "
            "position (0 when nothing is unresolved).",
        )
        self.rate_limit_wait = counter(
            "rate_limit_wait_seconds",
            "Seconds batches waited for the client-side rate limit (self-throttling).",
        )
        self.rate_limit = gauge(
            "rate_limit_entries_per_second",
            "Entries per second this process may send (0: no limit).",
        )
        self.dependency_errors = counter(
            "dependency_errors",
            "Failed calls to the S3 offload bucket, the Schema Registry and the "
            "dead-letter producer's brokers.",
            ("dependency",),
        )
        self.records_abandoned = counter(
            "records_abandoned",
            "Records left unresolved when a drain timed out (redelivered to the next owner).",
            ("reason",),
        )
        self.lag_refresh_errors = counter(
            "consumer_lag_refresh_errors",
            "Failed reads of committed or end offsets from the brokers.",
        )
        self.lag_last_refresh = gauge(
            "consumer_lag_last_refresh_timestamp_seconds",
            "When consumer_lag_records was last read from the brokers (Unix time).",
        )
        self.batch_entries = LoopHistogram(
            f"{PREFIX}_batch_entries", "Entries per publish call.", (1, 2, 5, 10, 15, 20), r
        )
        self.batch_bytes = LoopHistogram(
            f"{PREFIX}_batch_bytes",
            "Bytes per publish call, as EventBridge counts them.",
            (1024, 4096, 16384, 65536, 131072, 262144, 524288, 1048576),
            r,
        )
        self.buffered_records = gauge("buffered_records", "Records consumed and not yet resolved.")
        self.buffered_bytes = gauge("buffered_bytes", "Bytes of records not yet resolved.")
        self.in_flight_requests = gauge("in_flight_requests", "Publish calls in flight.")
        self.consumer_lag = gauge(
            "consumer_lag_records",
            "Records between the group's committed offset and the partition's log end "
            "offset, read from the brokers.",
            ("topic", "partition"),
        )
        self.backpressure_paused = gauge(
            "backpressure_paused",
            "1 while the buffer is at its bound (no records taken; partitions paused after 1 s).",
        )
        self.assigned_partitions = gauge(
            "assigned_partitions", "Partitions assigned to this bridge."
        )
        self.ready = gauge(
            "ready", "1 when started, in its consumer group, not stopping and not fatal."
        )
        self.build_info = gauge("build_info", "Version of the bridge.", ("version",))
        self.build_info.labels(version=__version__).set(1)
        self._initialise_labels()

    def _initialise_labels(self) -> None:
        for outcome in PUBLISH_OUTCOMES:
            self.publish_requests.labels(outcome=outcome)
            self.publish_duration.labels(outcome=outcome)
        for result in COMMIT_RESULTS:
            self.commits.labels(result=result)
        for event in REBALANCE_EVENTS:
            self.rebalances.labels(event=event)
        for stage in Stage:
            self.dead_letters.labels(stage=str(stage))
        for code in RETRY_REASONS:
            self.retries.labels(reason=code)
        for code in ENTRY_FAILURE_CODES:
            self.entry_failures.labels(code=code)
        for dependency in DEPENDENCIES:
            self.dependency_errors.labels(dependency=dependency)
        for reason in ABANDON_REASONS:
            self.records_abandoned.labels(reason=reason)

    def topics_assigned(self, topics: Iterable[str]) -> None:
        """Create the per-topic counters at 0 as soon as a topic is assigned."""
        for topic in topics:
            for counter in (self.records_consumed, self.records_filtered, self.entries_published):
                counter.labels(topic=topic)

    def bind(self, health: Health) -> None:
        """``ready`` reads the probe's own answer at every scrape, so it is never stale."""
        self.ready.set_function(lambda: 1.0 if health.ready()[0] else 0.0)

    def dependency_error(self, dependency: str) -> None:
        """One failed call to a peer (see ``DEPENDENCIES``); thread-safe."""
        self.dependency_errors.labels(dependency=dependency).inc()

    def forget_topic(self, topic: str) -> None:
        """Remove a topic's series once no partition of it is assigned here."""
        for metric in (self.records_consumed, self.records_filtered, self.entries_published):
            with contextlib.suppress(KeyError):
                metric.remove(topic)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class LoopHistogram:
    """A histogram observed by the main loop alone (once per entry for the latency), exported
    at each scrape. ``observe`` is a bisect and two additions, without the lock and the two
    locked counters of prometheus_client's ``Histogram`` (a tenth of the loop's own work per
    record in profiles). A scrape thread reads while the loop adds: it copies the buckets
    once and derives the count from them, so each scrape is consistent in itself."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = tuple(float(b) for b in buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound (+Inf)
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def observe_all(self, values: Iterable[float]) -> None:
        """``observe`` of each value, in one call: the latencies of a call's entries."""
        bounds, counts = self._bounds, self._counts
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        self._sum += total

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        counts, total = list(self._counts), self._sum
        buckets, cumulative = [], 0
        for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), cumulative))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, total)
        yield family


class Health:
    """Liveness and readiness, fed by the main loop with one call per change of state.

    Readiness does not depend on partitions: a replica in the group without any (a
    standby, more replicas than partitions) is healthy capacity, ready to take over in the
    next rebalance. Counting it as unready would make a PodDisruptionBudget treat it as
    disrupted and a surge pod stall every rollout.
    """

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._beat = time.monotonic()
        self.started = False
        self.in_group = False
        self.stopping = False
        self.fatal: str | None = None

    def beat(self) -> None:
        self._beat = time.monotonic()

    def start_done(self) -> None:
        """Start-up finished (settings, credentials, dead-letter topic, subscription)."""
        self.started = True
        self.beat()

    def joined(self) -> None:
        """An assignment callback arrived, with or without partitions: a group member."""
        self.in_group = True

    def left_group(self) -> None:
        """The membership was lost (partitions lost, e.g. a session time-out)."""
        self.in_group = False

    def shutting_down(self) -> None:
        self.stopping = True

    def failed(self, code: str) -> None:
        self.fatal = code

    def live(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting"
        idle = time.monotonic() - self._beat
        if idle > self.stall_seconds:
            return False, f"main loop stalled for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.fatal is not None:
            return False, f"fatal: {self.fatal}"
        if self.stopping:
            return False, "shutting down"
        if not self.started:
            return False, "starting"
        if not self.in_group:
            return False, "joining the consumer group"
        return True, "ok"


class _Handler(BaseHTTPRequestHandler):
    metrics: ClassVar[Metrics]
    health: ClassVar[Health]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.metrics.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._status(*self.health.live())
        elif path == "/readyz":
            self._status(*self.health.ready())
        else:
            self._send(404, b"not found\n", "text/plain")

    def _status(self, ok: bool, reason: str) -> None:
        self._send(200 if ok else 503, f"{reason}\n".encode(), "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not worth a log line each."""


class HttpServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread."""

    def __init__(self, host: str, port: int, metrics: Metrics, health: Health) -> None:
        metrics.bind(health)
        handler = type("Handler", (_Handler,), {"metrics": metrics, "health": health})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        )
        text = super().format(record)
        return f"{text} {extras}" if extras else text


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if fmt == "json":
        JsonFormatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # botocore and urllib3 are chatty at DEBUG and may echo request bodies: keep them quiet.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
