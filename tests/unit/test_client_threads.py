"""Closing the bridge destroys its librdkafka clients: none of their threads outlives it.

A client left to the garbage collector keeps its threads until the process exits, and
OpenSSL's exit handler then frees what a thread in a TLS handshake is using: the bridge died
of signal 11 instead of exiting 1 when the broker refused the dead-letter producer's
certificate. These tests name librdkafka's threads (``rdk:*``) through ``/proc``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kafka_eventbridge.consumer import KafkaConsumer
from kafka_eventbridge.deadletter import DeadLetterProducer
from kafka_eventbridge.errors import RecordError, Stage
from kafka_eventbridge.lag import LagMonitor
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.telemetry import Metrics
from tests.unit.test_consumer_close import Listener

NO_BROKER = {"bootstrap.servers": "127.0.0.1:1"}


def librdkafka_threads() -> set[str]:
    """The ids of this process's threads that librdkafka started."""
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith("rdk:"):
                found.add(task.name)
        except OSError:  # the thread ended meanwhile
            continue
    return found


def test_the_dead_letter_producer_gives_up_its_unconfirmed_letters_and_its_threads() -> None:
    before = librdkafka_threads()
    delivered: list[object] = []
    producer = DeadLetterProducer(
        {**NO_BROKER, "message.timeout.ms": "600000"}, "dlq", lambda *a: delivered.append(a)
    )
    started = librdkafka_threads() - before
    assert started
    record = SourceRecord("orders", 0, 7, None, None, b"{}", [])
    producer.send(record, RecordError(Stage.DECODE, "InvalidJson", "bad"), 0, "token")

    assert producer.close(0.2) == 1  # no broker: the letter was never confirmed
    assert not librdkafka_threads() & started
    assert delivered == []  # nor reported as written: its record stays uncommitted
    assert producer.fatal is None  # giving it up at exit is not a write failure
    assert producer.pending == 0


def test_the_lag_monitor_destroys_its_admin_client_when_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The refresh fails (no broker) and logs its traceback; a record kept by the test's log
    # capture would keep the client's frames, and so the client, alive.
    caplog.set_level(logging.ERROR, logger="kafka_eventbridge.lag")
    before = librdkafka_threads()
    monitor = LagMonitor(
        NO_BROKER,
        group="g",
        topics=["orders"],
        metrics=Metrics(),
        interval=0.1,
        assignment=lambda: (),
    )
    started = librdkafka_threads() - before
    assert started
    monitor.start()
    monitor.stop()
    assert not librdkafka_threads() & started


def test_the_consumer_destroys_its_client_when_closed() -> None:
    before = librdkafka_threads()
    consumer = KafkaConsumer(
        {**NO_BROKER, "group.id": "threads-test"}, ["orders"], Listener(), lambda *_: None
    )
    started = librdkafka_threads() - before
    assert started
    consumer.close(timeout=30)
    assert not consumer.abandoned
    assert not librdkafka_threads() & started
