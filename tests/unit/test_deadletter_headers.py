"""Dead-letter headers and the dead-letter producer's configuration."""

from __future__ import annotations

import pytest

from kafka_eventbridge.deadletter import dead_letter_headers, producer_config
from kafka_eventbridge.errors import RecordError, Stage
from kafka_eventbridge.records import SourceRecord

ORIGINAL = [("trace-id", b"abc"), ("bin", b"\xff\x00"), ("empty", None), ("trace-id", b"def")]


def record() -> SourceRecord:
    return SourceRecord("orders", 3, 42, 1767225600000, b"\xffkey", b"{bad", list(ORIGINAL))


def test_original_headers_first_then_the_seven_bridge_headers() -> None:
    error = RecordError(Stage.DECODE, "InvalidJson", "value is not JSON: unexpected end")

    headers = dead_letter_headers(record(), error, attempts=0)

    assert headers[: len(ORIGINAL)] == ORIGINAL
    assert headers[len(ORIGINAL) :] == [
        ("bridge.error.code", b"InvalidJson"),
        ("bridge.error.message", b"value is not JSON: unexpected end"),
        ("bridge.error.stage", b"decode"),
        ("bridge.source.topic", b"orders"),
        ("bridge.source.partition", b"3"),
        ("bridge.source.offset", b"42"),
        ("bridge.attempts", b"0"),
    ]


@pytest.mark.parametrize(
    ("stage", "value"),
    [
        (Stage.DECODE, b"decode"),
        (Stage.MAP, b"map"),
        (Stage.VALIDATE, b"validate"),
        (Stage.PUBLISH, b"publish"),
        (Stage.RETRIES_EXHAUSTED, b"retries-exhausted"),
    ],
)
def test_stage_header(stage: Stage, value: bytes) -> None:
    headers = dict(dead_letter_headers(record(), RecordError(stage, "X", "m"), attempts=3))

    assert headers["bridge.error.stage"] == value
    assert headers["bridge.attempts"] == b"3"


def test_message_header_is_utf8_and_bounded() -> None:
    error = RecordError(Stage.PUBLISH, "MalformedDetail", "é" * 5000)

    message = dict(dead_letter_headers(record(), error, attempts=1))["bridge.error.message"]
    assert message is not None
    assert message.decode("utf-8") == "é" * 1000


def test_the_record_itself_is_not_changed() -> None:
    rec = record()
    dead_letter_headers(rec, RecordError(Stage.MAP, "NoRoute", "m"), attempts=0)

    assert rec.headers == ORIGINAL


def test_producer_is_idempotent_with_acks_all_whatever_the_user_set() -> None:
    config = producer_config({"acks": "1", "enable.idempotence": "false"})

    assert config["acks"] == "all"
    assert config["enable.idempotence"] == "true"


def test_producer_drops_consumer_only_properties_and_keeps_the_rest() -> None:
    consumer = {
        "bootstrap.servers": "kafka:9092",
        "group.id": "bridge",
        "group.instance.id": "pod-1",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "2000",
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "max.poll.interval.ms": "300000",
        "fetch.max.bytes": "16777216",
        "queued.max.messages.kbytes": "16384",
        "isolation.level": "read_committed",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "bridge",
        "sasl.password": "secret",
        "ssl.ca.location": "ca.pem",
        "ssl.key.password": "secret",
        "client.id": "bridge-1",
    }

    config = producer_config(consumer)

    assert {k: v for k, v in config.items() if k in consumer} == {
        "bootstrap.servers": "kafka:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "bridge",
        "sasl.password": "secret",
        "ssl.ca.location": "ca.pem",
        "ssl.key.password": "secret",
        "client.id": "bridge-1",
    }
