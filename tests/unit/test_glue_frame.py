"""The Glue wire format, read without a registry (schemas.glue_frame)."""

from __future__ import annotations

import uuid
import zlib

import pytest

from kafka_eventbridge.errors import RecordError, Stage
from kafka_eventbridge.schemas import GLUE_MAX_INFLATED_BYTES, glue_frame

VERSION = uuid.UUID("b7c1a1c4-2f0e-4d4b-9a51-0d3f1f2b6e8a")


def test_an_uncompressed_frame_gives_the_version_id_and_the_payload() -> None:
    assert glue_frame(b"\x03\x00" + VERSION.bytes + b"payload", "value") == (VERSION, b"payload")


def test_a_zlib_frame_is_inflated() -> None:
    framed = b"\x03\x05" + VERSION.bytes + zlib.compress(b"payload" * 100)
    assert glue_frame(framed, "value") == (VERSION, b"payload" * 100)


def test_an_empty_payload_is_a_frame_too() -> None:
    assert glue_frame(b"\x03\x00" + VERSION.bytes, "key") == (VERSION, b"")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "InvalidMagicByte"),
        (b"\x03\x00" + VERSION.bytes[:15], "InvalidMagicByte"),  # one byte short of a header
        (b"\x00\x00\x00\x00\x01" + bytes(20), "InvalidMagicByte"),  # Confluent framing
        (b"\x02\x00" + VERSION.bytes, "InvalidMagicByte"),
        (b"\x03\x01" + VERSION.bytes, "InvalidCompression"),
        (b"\x03\x05" + VERSION.bytes + b"not zlib", "InvalidCompression"),
        (b"\x03\x05" + VERSION.bytes + zlib.compress(b"x" * 1000)[:-6], "InvalidCompression"),
    ],
)
def test_what_is_not_a_glue_frame_is_the_records_fault(data: bytes, code: str) -> None:
    with pytest.raises(RecordError) as caught:
        glue_frame(data, "key")
    assert (caught.value.stage, caught.value.code) == (Stage.DECODE, code)
    assert caught.value.message.startswith("key")


def test_a_payload_inflating_past_the_bound_is_refused_without_inflating_it_all() -> None:
    bomb = zlib.compress(bytes(GLUE_MAX_INFLATED_BYTES + 1), 9)
    with pytest.raises(RecordError) as caught:
        glue_frame(b"\x03\x05" + VERSION.bytes + bomb, "value")
    assert caught.value.code == "InvalidCompression"
    assert "inflates past" in caught.value.message
