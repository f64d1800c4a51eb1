"""The record envelope: what a mapping expression sees of a Kafka record.

A :class:`SourceRecord` is the Kafka record as received, kept byte for byte for the
dead-letter topic. :func:`envelope` decodes it into the JSON-like dict that JMESPath
expressions are evaluated on::

    {"topic": "orders", "partition": 3, "offset": 42, "timestamp": 1767225600000,
     "key": "customer-7", "headers": {"trace-id": "abc"}, "value": {...}}
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson

from kafka_eventbridge.errors import RecordError, Stage
from kafka_eventbridge.settings import ValueFormat

if TYPE_CHECKING:
    from kafka_eventbridge.ports import Message

Headers = list[tuple[str, bytes | None]]


@dataclass(slots=True)
class SourceRecord:
    """One consumed Kafka record, unchanged."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # epoch milliseconds, None when the broker has none
    key: bytes | None
    value: bytes | None
    headers: Headers
    # The record's trace span while it is on its way, when traces are on (tracing.py).
    span: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_message(cls, message: Message) -> SourceRecord:
        ts_type, ts = message.timestamp()
        # Positional: keyword arguments cost measurably here (once per record).
        return cls(
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
            ts if ts_type != 0 and ts >= 0 else None,
            message.key(),
            message.value(),
            # A consumed message's headers are always a list of (str, bytes | None).
            cast(Headers, message.headers() or []),
        )

    @property
    def size(self) -> int:
        """Bytes this record holds in memory, for the buffer bound."""
        size = len(self.value or b"") + len(self.key or b"")
        for name, value in self.headers:
            size += len(name) + len(value or b"")
        return size


def decode_value(data: bytes, value_format: ValueFormat) -> Any:
    """Decode a record value for the envelope; undecodable values raise ``RecordError``."""
    if value_format is ValueFormat.JSON:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RecordError(Stage.DECODE, "InvalidJson", f"value is not JSON: {exc}") from None
    if value_format is ValueFormat.STRING:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(Stage.DECODE, "InvalidUtf8", f"value is not UTF-8: {exc}") from None
    return base64.b64encode(data).decode("ascii")


def envelope(record: SourceRecord, value: Any) -> dict[str, Any]:
    """The dict that mapping expressions are evaluated on."""
    # Keys and headers are often binary (ids, serialized schemas); a readable string with
    # escapes serves expressions better than dead-lettering every record. Decoded inline
    # rather than through a helper: this runs for every record.
    headers: dict[str, str | None] = {}
    for name, data in record.headers:
        headers[name] = None if data is None else data.decode("utf-8", "backslashreplace")
    key = record.key
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": None if key is None else key.decode("utf-8", "backslashreplace"),
        "headers": headers,
        "value": value,
    }
