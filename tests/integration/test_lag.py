"""Consumer lag as the bridge reports it: the group's committed offsets against the
partitions' end offsets, read from the brokers, fresh while partitions are paused."""

from __future__ import annotations

from functools import partial

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from kafka_eventbridge_testing.brokers import KafkaBroker
from tests.integration.conftest import Scenario
from tests.integration.support import BridgeProcess, json_values, wait_until

pytestmark = pytest.mark.integration

STALLED = 600_000  # ms: the stand-in holds every call far beyond the client's read timeout
QUICK = {
    "BRIDGE_LAG_INTERVAL_SECONDS": "1",
    "BRIDGE_EVENTBRIDGE_READ_TIMEOUT_SECONDS": "2",
}


def produce_to(broker: KafkaBroker, topic: str, partition: int, count: int) -> None:
    """One request per record, so that every record is a batch of its own: the end offset
    any broker reports (even one that answers ListOffsets with the last batch's start) is
    then exact."""
    producer = Producer(broker.client_config({"linger.ms": 0}))
    for value in json_values(f"p{partition}", count):
        producer.produce(topic, value, partition=partition)
        assert producer.flush(10) == 0


def commit_for_group(broker: KafkaBroker, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = Consumer(broker.consumer_config(group, {"enable.auto.commit": False}))
    try:
        consumer.commit(
            offsets=[TopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()


def lag_of(process: BridgeProcess, topic: str) -> dict[int, float]:
    prefix = 'kafka_eventbridge_consumer_lag_records{partition="'
    lags = {}
    for name, value in process.metrics().items():
        if name.startswith(prefix) and f'topic="{topic}"' in name:
            lags[int(name[len(prefix) :].split('"', 1)[0])] = value
    return lags


def lag_is(process: BridgeProcess, topic: str, expected: dict[int, float]) -> bool:
    return lag_of(process, topic) == expected


def test_lag_is_counted_from_the_groups_committed_offsets(scenario: Scenario) -> None:
    topic = scenario.topic(partitions=2)
    for partition in (0, 1):
        produce_to(scenario.broker, topic, partition, 30)
    committed = {TopicPartition(topic, 0): 10, TopicPartition(topic, 1): 25}
    commit_for_group(scenario.broker, scenario.group, committed)
    scenario.fake.update_faults(latency_ms=STALLED)  # nothing resolves, nothing is committed
    process = scenario.bridge(topic, **QUICK)
    process.wait_ready()
    wait_until(lambda: lag_of(process, topic) == {0: 20, 1: 5}, 30, "lag = end - committed offset")
    assert process.metric("kafka_eventbridge_buffered_records") == 25  # what it read is held

    scenario.fake.update_faults(latency_ms=0)
    wait_until(lambda: scenario.committed(topic, 2) == {0: 30, 1: 30}, 60, "all committed")
    wait_until(lambda: lag_of(process, topic) == {0: 0, 1: 0}, 15, "lag back to 0")
    assert process.terminate() == 0


def test_lag_keeps_rising_while_paused_on_a_stalled_endpoint(scenario: Scenario) -> None:
    topic = scenario.topic(partitions=1)
    produce_to(scenario.broker, topic, 0, 40)
    scenario.fake.update_faults(latency_ms=STALLED)
    process = scenario.bridge(topic, BRIDGE_MAX_BUFFERED_RECORDS="20", **QUICK)
    process.wait_ready()
    wait_until(lambda: process.metric("kafka_eventbridge_backpressure_paused") == 1, 30, "paused")
    wait_until(lambda: lag_of(process, topic) == {0: 40}, 30, "lag of the first records")

    seen = [40.0]
    for step in range(3):
        produce_to(scenario.broker, topic, 0, 10)
        expected = 40 + 10 * (step + 1)
        wait_until(partial(lag_is, process, topic, {0: expected}), 20, f"lag {expected}")
        seen.append(lag_of(process, topic)[0])
        # Still paused, nothing committed: only the brokers' view moved.
        assert process.metric("kafka_eventbridge_backpressure_paused") == 1
        assert scenario.committed(topic, 1) == {0: 0}
    assert seen == [40, 50, 60, 70]
    assert process.metric("kafka_eventbridge_oldest_unresolved_age_seconds") > 0
    process.kill()
