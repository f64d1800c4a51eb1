"""A dead letter waiting for room in the producer's local queue keeps the loop alive."""

from __future__ import annotations

from kafka_eventbridge.deadletter import DeadLetterProducer
from kafka_eventbridge.errors import FatalError, RecordError, Stage
from kafka_eventbridge.records import SourceRecord


def test_a_full_local_queue_beats_liveness_and_gives_way_to_a_fatal_error() -> None:
    # No broker answers: the first dead letter fills the one-message queue for good.
    config = {
        "bootstrap.servers": "127.0.0.1:1",
        "queue.buffering.max.messages": "1",
        "message.timeout.ms": "600000",
    }
    beats = 0

    def beat() -> None:
        nonlocal beats
        beats += 1
        if beats == 3:
            producer.fatal = FatalError("DeadLetterWriteFailed", "stopping the test")

    producer = DeadLetterProducer(config, "dlq", lambda *_: None, beat)
    record = SourceRecord("orders", 0, 1, None, None, b"{}", [])
    error = RecordError(Stage.DECODE, "InvalidJson", "bad")
    producer.send(record, error, 0, None)
    producer.send(record, error, 0, None)  # waits for room, beating, until the fatal error

    assert beats == 3
    assert producer.pending == 1
