"""Telemetry: every metric, the HTTP endpoints, and logging, in one place.

Metrics follow Prometheus naming (prefix ``kafka_eventbridge_``, ``_total`` counters,
``_seconds`` and ``_bytes`` base units). ``/healthz`` fails when the main loop has not
turned for ``BRIDGE_HEALTH_STALL_SECONDS``; ``/readyz`` fails until the first partition
assignment arrives, and after a fatal error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from kafka_eventbridge import __version__

PREFIX = "kafka_eventbridge"


class Metrics:
    """The bridge's metrics, registered in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=r)

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
            "Duration of publish calls.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.batch_entries = Histogram(
            f"{PREFIX}_batch_entries",
            "Entries per publish call.",
            buckets=(1, 2, 5, 10, 15, 20),
            registry=r,
        )
        self.batch_bytes = Histogram(
            f"{PREFIX}_batch_bytes",
            "Bytes per publish call, as EventBridge counts them.",
            buckets=(1024, 4096, 16384, 65536, 131072, 262144, 524288, 1048576),
            registry=r,
        )
        self.buffered_records = gauge("buffered_records", "Records consumed and not yet resolved.")
        self.buffered_bytes = gauge("buffered_bytes", "Bytes of records not yet resolved.")
        self.in_flight_requests = gauge("in_flight_requests", "Publish calls in flight.")
        self.consumer_lag = gauge(
            "consumer_lag_records",
            "Records between the committed position and the partition's end.",
            ("topic", "partition"),
        )
        self.backpressure_paused = gauge(
            "backpressure_paused", "1 while fetching is paused because the buffer is full."
        )
        self.assigned_partitions = gauge(
            "assigned_partitions", "Partitions assigned to this bridge."
        )
        self.ready = gauge("ready", "1 when the bridge is assigned and healthy.")
        self.build_info = gauge("build_info", "Version of the bridge.", ("version",))
        self.build_info.labels(version=__version__).set(1)

    def forget_topic(self, topic: str) -> None:
        """Remove a topic's series once no partition of it is assigned here."""
        for metric in (self.records_consumed, self.records_filtered, self.entries_published):
            with contextlib.suppress(KeyError):
                metric.remove(topic)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Health:
    """Liveness and readiness, fed by the main loop."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._beat = time.monotonic()
        self.assigned = False
        self.fatal: str | None = None

    def beat(self) -> None:
        self._beat = time.monotonic()

    def live(self) -> tuple[bool, str]:
        idle = time.monotonic() - self._beat
        if idle > self.stall_seconds:
            return False, f"main loop stalled for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.fatal is not None:
            return False, f"fatal: {self.fatal}"
        if not self.assigned:
            return False, "waiting for a partition assignment"
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
