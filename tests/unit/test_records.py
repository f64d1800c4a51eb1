"""The record envelope: what mapping expressions see of a Kafka record."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Message

from kafka_eventbridge.errors import RecordError, Stage
from kafka_eventbridge.records import SourceRecord, decode_value, envelope
from kafka_eventbridge.settings import ValueFormat


def message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "topic": "orders",
        "partition": 3,
        "offset": 42,
        "key": b"customer-7",
        "value": b'{"a":1}',
        "headers": [("trace-id", b"abc"), ("empty", None)],
        "timestamp": (TIMESTAMP_CREATE_TIME, 1767225600000),
    }
    fields.update(overrides)
    return Message(**fields)


def test_record_from_a_consumed_message_keeps_everything() -> None:
    record = SourceRecord.from_message(message())

    assert record == SourceRecord(
        topic="orders",
        partition=3,
        offset=42,
        timestamp=1767225600000,
        key=b"customer-7",
        value=b'{"a":1}',
        headers=[("trace-id", b"abc"), ("empty", None)],
    )


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ((TIMESTAMP_CREATE_TIME, 5), 5),
        ((TIMESTAMP_LOG_APPEND_TIME, 7), 7),
        ((0, 0), None),  # TIMESTAMP_NOT_AVAILABLE
        ((TIMESTAMP_CREATE_TIME, -1), None),
    ],
)
def test_record_timestamp(timestamp: tuple[int, int], expected: int | None) -> None:
    assert SourceRecord.from_message(message(timestamp=timestamp)).timestamp == expected


def test_message_without_headers_key_or_value() -> None:
    record = SourceRecord.from_message(message(headers=None, key=None, value=None))

    assert (record.headers, record.key, record.value) == ([], None, None)
    assert record.size == 0


def test_record_size_counts_key_value_and_headers() -> None:
    record = SourceRecord.from_message(message())

    # value 7 + key 10 + "trace-id" 8 + "abc" 3 + "empty" 5
    assert record.size == 33


def test_envelope_shape() -> None:
    record = SourceRecord.from_message(message())

    assert envelope(record, {"a": 1}) == {
        "topic": "orders",
        "partition": 3,
        "offset": 42,
        "timestamp": 1767225600000,
        "key": "customer-7",
        "headers": {"trace-id": "abc", "empty": None},
        "value": {"a": 1},
    }


def test_envelope_of_binary_key_and_header_escapes_the_bad_bytes() -> None:
    record = SourceRecord.from_message(message(key=b"\x80id", headers=[("h", b"ok\xff")]))
    env = envelope(record, None)

    assert env["key"] == "\\x80id"
    assert env["headers"] == {"h": "ok\\xff"}


def test_repeated_header_keeps_the_last_value() -> None:
    record = SourceRecord.from_message(message(headers=[("h", b"1"), ("h", b"2")]))

    assert envelope(record, None)["headers"] == {"h": "2"}


@pytest.mark.parametrize(
    ("value_format", "data", "expected"),
    [
        (ValueFormat.JSON, b'{"a":[1,2.5,null]}', {"a": [1, 2.5, None]}),
        (ValueFormat.JSON, b"3", 3),
        (ValueFormat.STRING, "Zoë".encode(), "Zoë"),
        (ValueFormat.BYTES, b"\x00\x01\xff", "AAH/"),
        (ValueFormat.BYTES, b"", ""),
    ],
)
def test_decode_value(value_format: ValueFormat, data: bytes, expected: Any) -> None:
    assert decode_value(data, value_format) == expected


@pytest.mark.parametrize(
    ("value_format", "data", "code"),
    [
        (ValueFormat.JSON, b"", "InvalidJson"),
        (ValueFormat.JSON, b'{"a":', "InvalidJson"),
        (ValueFormat.STRING, b"\xc3", "InvalidUtf8"),
    ],
)
def test_undecodable_value(value_format: ValueFormat, data: bytes, code: str) -> None:
    with pytest.raises(RecordError) as caught:
        decode_value(data, value_format)

    assert (caught.value.stage, caught.value.code) == (Stage.DECODE, code)
