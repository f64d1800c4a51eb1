"""Leaving the group is bounded: a librdkafka close that never returns does not hold the exit."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import TopicPartition

from kafka_eventbridge.consumer import KafkaConsumer
from kafka_eventbridge.offsets import PartitionId


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[PartitionId]]] = []

    def partitions_assigned(self, partitions: list[PartitionId]) -> None:
        self.events.append(("assigned", partitions))

    def partitions_revoked(self, partitions: list[PartitionId]) -> None:
        self.events.append(("revoked", partitions))

    def partitions_lost(self, partitions: list[PartitionId]) -> None:
        self.events.append(("lost", partitions))


class HangingClose:
    """Stands in for confluent-kafka's consumer, whose close does not return until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def close(self) -> None:
        self.entered.set()
        self.release.wait()


class FailingClose:
    def close(self) -> None:
        raise RuntimeError("broker gone")


def consumer(listener: Listener) -> KafkaConsumer:
    made = KafkaConsumer(
        {"bootstrap.servers": "127.0.0.1:9", "group.id": "close-test"},
        ["t"],
        listener,
        lambda _committed, _failed: None,
    )
    made._consumer.close()  # the real one, never connected: what it would leave behind
    return made


def test_a_close_that_never_returns_is_given_up_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = Listener()
    kafka = consumer(listener)
    hanging = HangingClose()
    kafka._consumer = hanging  # type: ignore[assignment]
    closer = threading.Thread(target=kafka.close, kwargs={"timeout": 0.2})
    try:
        with caplog.at_level(logging.WARNING, logger="kafka_eventbridge.consumer"):
            closer.start()
            closer.join(30)
            assert not closer.is_alive(), "close waited for librdkafka past its timeout"
        assert hanging.entered.is_set()
        assert "did not finish" in caplog.text
        # A revoke that librdkafka delivers later, from the abandoned close, is not handed
        # to a pipeline that has moved on to exiting.
        kafka._revoked(None, [TopicPartition("t", 0)])  # type: ignore[arg-type]
        kafka._assigned(None, [TopicPartition("t", 1)])  # type: ignore[arg-type]
        kafka._lost(None, [TopicPartition("t", 2)])  # type: ignore[arg-type]
        assert listener.events == []
    finally:
        hanging.release.set()


def test_a_close_that_returns_in_time_runs_its_callbacks_and_reports_its_error() -> None:
    listener = Listener()
    kafka = consumer(listener)
    kafka._revoked(None, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert listener.events == [("revoked", [("t", 0)])]
    kafka._consumer = FailingClose()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="broker gone"):
        kafka.close(timeout=30)
