"""A large backlog against a slow endpoint: memory stays bounded because fetching pauses.

A million small records wait in the topic while EventBridge answers slowly. Without
backpressure the consumer would read the backlog into memory as fast as Kafka serves it.
With it, the bridge holds at most ``BRIDGE_MAX_BUFFERED_RECORDS`` unresolved records, pauses
its partitions above that (and keeps polling, so it stays in the group), and its resident
memory does not follow the backlog. The run is cut after a fixed time: delivering a million
records at this pace is not the point, staying small while it could not keep up is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest
from confluent_kafka import Producer

from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridgeProcess, Faults
from tests.integration.conftest import Scenario
from tests.reliability.harness import Results, delivered_ids, peak_rss_mb, rss_mb, tally

pytestmark = pytest.mark.reliability

PARTITIONS = 4
BACKLOG = 1_000_000
RUN_SECONDS = 60
LATENCY_MS = 250  # 16 calls in flight x 20 entries / 0.25 s: ~1,300 entries a second at most
RSS_LIMIT_MB = 300
PAUSED = "kafka_eventbridge_backpressure_paused"
BUFFERED = "kafka_eventbridge_buffered_records"


@pytest.fixture
def slow_endpoint() -> Iterator[FakeEventBridgeProcess]:
    """The stand-in in its own process, so its work does not compete for this one's GIL."""
    with FakeEventBridgeProcess(Faults(latency_ms=LATENCY_MS)) as server:
        yield server


@pytest.mark.timeout(300)
def test_large_backlog_against_a_slow_endpoint_keeps_memory_bounded(
    scenario: Scenario, slow_endpoint: FakeEventBridgeProcess, results: Results
) -> None:
    name = scenario.topic(partitions=PARTITIONS)
    started = time.monotonic()
    produce_backlog(scenario.broker, name, BACKLOG)
    produced_s = time.monotonic() - started

    process = scenario.bridge(name, slow_endpoint.url, BRIDGE_SHUTDOWN_TIMEOUT_SECONDS="5")
    process.wait_ready()
    assert process.process is not None
    samples = sample(process.metric, process.process.pid, RUN_SECONDS)
    peak = peak_rss_mb(process.process.pid)
    assert process.terminate() == 0

    marks = scenario.committed(name, PARTITIONS)
    delivered = delivered_ids(slow_endpoint.control)
    figures = results.report(
        tally(
            "1M backlog, slow endpoint, 60 s",
            scenario.broker,
            below(marks),
            delivered,
            seconds=time.monotonic() - started,
            backlog=BACKLOG,
            produce_s=round(produced_s, 1),
            peak_rss_mb=round(peak, 1),
            max_buffered_records=int(max(samples[BUFFERED])),
            backpressure_engaged=max(samples[PAUSED]) == 1,
            committed=sum(marks.values()),
        )
    )
    # Nothing below the committed offsets is missing (lost counts only those records).
    assert figures.lost == 0
    assert max(samples[PAUSED]) == 1, "backpressure never paused fetching"
    assert peak < RSS_LIMIT_MB
    assert 0 < figures.delivered < BACKLOG


def produce_backlog(broker: KafkaBroker, topic: str, count: int) -> None:
    """``count`` small records, ids ``<partition>-<sequence>``, as fast as the broker takes
    them: long linger and big batches, so a million records take seconds, not minutes."""
    producer = Producer(
        broker.client_config(
            {
                "linger.ms": 100,
                "batch.num.messages": 10_000,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 500_000,
                "queue.buffering.max.kbytes": 512 * 1024,
                "enable.idempotence": True,
            }
        )
    )
    for n in range(count):
        partition, sequence = n % PARTITIONS, n // PARTITIONS
        value = b'{"id":"%d-%d","type":"order.created"}' % (partition, sequence)
        while True:
            try:
                producer.produce(topic, value, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0


def sample(metric: Callable[[str], float], pid: int, seconds: float) -> dict[str, list[float]]:
    """Backpressure, buffered records and RSS once a second for ``seconds``."""
    samples: dict[str, list[float]] = {PAUSED: [], BUFFERED: [], "rss_mb": []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples[PAUSED].append(metric(PAUSED))
        samples[BUFFERED].append(metric(BUFFERED))
        samples["rss_mb"].append(rss_mb(pid))
        time.sleep(1)
    return samples


def below(marks: Mapping[int, int]) -> Sequence[str]:
    """The ids of every record below the committed offsets: at-least-once says each of them
    was delivered (or dead-lettered) before the commit passed it."""
    return [f"{p}-{seq}" for p, mark in marks.items() for seq in range(mark)]
