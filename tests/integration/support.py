"""Helpers for driving the bridge as users do: environment variables, a process, signals.

The bridge runs as ``kafka-eventbridge run`` in a child process, so exit codes, SIGTERM
handling and the HTTP endpoints are exercised exactly as Kubernetes would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from kafka_eventbridge.settings import property_variable
from kafka_eventbridge_testing import free_port
from kafka_eventbridge_testing.brokers import (
    SESSION_TIMEOUT_MS,
    BrokerUnavailableError,
    KafkaBroker,
)
from kafka_eventbridge_testing.procfs import children

PARTNER_SOURCE = "aws.partner/example.com/orders"


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def produce(
    broker: KafkaBroker,
    topic: str,
    values: Iterable[bytes | None],
    *,
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> int:
    """Produce values round-robin over partitions (key = sequence number); returns the count."""
    producer = Producer(broker.client_config({"linger.ms": 20, "enable.idempotence": True}))
    count = 0
    for count, value in enumerate(values, 1):
        producer.produce(topic, value, key=str(count).encode(), headers=headers)
        if count % 10_000 == 0:
            producer.flush()
    assert producer.flush(30) == 0
    return count


def json_values(prefix: str, n: int) -> list[bytes]:
    return [
        orjson.dumps({"id": f"{prefix}-{i}", "type": "order.created", "n": i}) for i in range(n)
    ]


def committed(broker: KafkaBroker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (missing partitions count as 0)."""
    consumer = Consumer(broker.consumer_config(group))
    try:
        result = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in result}


def end_offsets(broker: KafkaBroker, topic: str, partitions: int) -> dict[int, int]:
    """High watermarks, read by fetching (ListOffsets is unreliable on the embedded broker)."""
    consumer = Consumer(broker.consumer_config(unique("probe"), {"enable.auto.commit": False}))
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + 10
        marks: dict[int, int] = {}
        while time.monotonic() < deadline and len(marks) < partitions:
            consumer.poll(0.2)
            for p in range(partitions):
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                if high >= 0:
                    marks[p] = high
        return marks
    finally:
        consumer.close()


def read_all(broker: KafkaBroker, topic: str, expected: int, timeout: float = 30) -> list[Message]:
    """Read a topic from the start until ``expected`` records arrived (or the timeout)."""
    consumer = Consumer(
        broker.consumer_config(
            unique("reader"), {"auto.offset.reset": "earliest", "enable.auto.commit": False}
        )
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(messages) < expected:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def headers_of(message: Message) -> dict[str, bytes | None]:
    """A consumed message's headers by name (values are bytes as consumed)."""
    headers = message.headers() or []
    assert isinstance(headers, list)
    return {
        name: value if not isinstance(value, str) else value.encode() for name, value in headers
    }


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``kafka-eventbridge check`` with these settings on top of this environment."""
    return subprocess.run(
        [sys.executable, "-m", "kafka_eventbridge", "check"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@dataclass
class BridgeProcess:
    """``kafka-eventbridge run`` as a child process."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = field(default_factory=free_port)

    def start(self) -> BridgeProcess:
        env = {
            **os.environ,
            **self.env,
            "BRIDGE_HTTP_PORT": str(self.port),
            "PYTHONFAULTHANDLER": "1",
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kafka_eventbridge", "run"], env=env, stdout=log, stderr=log
        )
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=5
            ) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except OSError:
            return 0, ""

    def metrics(self) -> dict[str, float]:
        status, text = self.get("/metrics")
        values: dict[str, float] = {}
        if status != 200:
            return values
        for line in text.splitlines():
            if line.startswith("kafka_eventbridge_"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def snapshot(self) -> str:
        """What a bridge still running when its test failed was doing: its health, its gauges
        and the stacks of its threads (py-spy, a development dependency)."""
        assert self.process is not None
        status, health = self.get("/healthz")
        gauges = "\n".join(
            f"{name} {value:g}"
            for name, value in sorted(self.metrics().items())
            if not name.partition("{")[0].endswith(("_bucket", "_created", "_sum", "_count"))
        )
        spy = Path(sys.executable).with_name("py-spy")
        try:
            dump = subprocess.run(
                [str(spy), "dump", "--pid", str(self.process.pid)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            stacks = dump.stdout + dump.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            stacks = f"py-spy dump failed: {exc!r}"
        return f"/healthz {status}: {health}\n{gauges}\n{stacks}"

    def metric(self, name: str) -> float:
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(
            lambda: self.get("/readyz")[0] == 200 or not self.running, timeout, "bridge ready"
        )
        assert self.running, f"bridge exited early:\n{self.log()}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The bridge and its child processes stopped (SIGSTOP) inside the block, the way a
        stalled node stops them: no heartbeat, no fetch, no answer read. SIGCONT after it."""
        assert self.process is not None
        pids = [self.process.pid, *children(self.process.pid)]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log().splitlines():
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return lines


def bridge_env(
    broker: KafkaBroker, topic: str, group: str, endpoint: str, **extra: str
) -> dict[str, str]:
    """The environment of a bridge run against ``endpoint``, tuned for quick tests."""
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "BRIDGE_KAFKA_TOPICS": topic,
        "BRIDGE_KAFKA_GROUP_ID": group,
        "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "BRIDGE_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "BRIDGE_MAP_SOURCE": f"'{PARTNER_SOURCE}'",
        "BRIDGE_MAP_DETAIL_TYPE": "value.type || topic",
        "BRIDGE_COMMIT_INTERVAL_MS": "200",
        "BRIDGE_RETRY_BACKOFF_MAX_MS": "1000",
        "BRIDGE_LOG_LEVEL": "INFO",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    env.update(extra)
    return env


def ids_of(details: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(d["id"]) for d in details if isinstance(d, Mapping) and "id" in d]


# -- suites that start a broker of their own (secured, OIDC) ---------------------------------

FATAL_EXIT_WITHIN = 45.0  # seconds from start to exit on a fatal error (login, bucket, registry)
B = TypeVar("B", bound=KafkaBroker)


def running_broker(broker: B, what: str) -> Iterator[B]:
    """A module fixture's body: ``broker`` started for the suite and stopped after it. The
    suite is about that peer: where it cannot start the suite fails rather than skipping."""
    try:
        broker.start()
    except BrokerUnavailableError as exc:
        pytest.fail(f"{what} cannot run (needs Java 17 and Maven): {exc}")
    try:
        yield broker
    finally:
        broker.stop()


def kafka_variables(properties: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties as the ``BRIDGE_KAFKA_*`` variables a user would set."""
    return {property_variable(name): value for name, value in properties.items()}


def topic_with_dead_letters(broker: KafkaBroker) -> tuple[str, str]:
    """A new topic of 2 partitions and a group whose dead-letter topic exists."""
    topic, group = unique("orders"), unique("group")
    broker.create_topic(topic, 2)
    broker.create_topic(f"{group}.dlq", 1)
    return topic, group


def assert_one_fatal_line(process: BridgeProcess, *words: str) -> str:
    """The bridge exited 1 with exactly one ``error`` line naming ``words`` (in any case),
    and no traceback; returns that line's message."""
    assert process.wait(FATAL_EXIT_WITHIN) == 1
    errors = [line for line in process.log_lines() if line.get("level") == "error"]
    assert len(errors) == 1, errors
    message = str(errors[0]["message"])
    for word in words:
        assert word.lower() in message.lower(), message
    assert "Traceback" not in process.log()
    return message
