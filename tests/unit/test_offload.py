from __future__ import annotations

import hashlib

import orjson
import pytest

from kafka_eventbridge.errors import ConfigError
from kafka_eventbridge.offload import MARKER, OffloadPolicy


def test_whole_detail_becomes_a_reference_with_size_and_hash() -> None:
    detail = orjson.dumps({"blob": "x" * 1000}).decode()
    planned = OffloadPolicy("bucket-1", prefix="big/").plan(detail, "orders", 2, 41)
    assert planned is not None
    new_detail, upload = planned
    reference = orjson.loads(new_detail)[MARKER]
    assert upload.body == detail.encode()
    assert reference["bucket"] == "bucket-1"
    assert reference["key"] == upload.key
    assert reference["uri"] == f"s3://bucket-1/{upload.key}"
    assert reference["size"] == len(detail.encode())
    assert reference["sha256"] == hashlib.sha256(detail.encode()).hexdigest()
    assert upload.key.startswith("big/orders/2/41-")


def test_the_same_record_always_gets_the_same_key() -> None:
    policy = OffloadPolicy("b")
    detail = '{"a": 1}'
    first, second = policy.plan(detail, "t", 0, 5), policy.plan(detail, "t", 0, 5)
    assert first is not None and second is not None
    assert first[1].key == second[1].key  # a retried upload overwrites, never duplicates


def test_a_field_is_offloaded_in_place_and_the_rest_kept() -> None:
    detail = orjson.dumps({"id": 7, "order": {"items": ["a"] * 50, "total": 3}}).decode()
    planned = OffloadPolicy("b", field="order.items").plan(detail, "t", 0, 1)
    assert planned is not None
    new_detail, upload = planned
    document = orjson.loads(new_detail)
    assert document["id"] == 7
    assert document["order"]["total"] == 3
    assert MARKER in document["order"]["items"]
    assert orjson.loads(upload.body) == ["a"] * 50


def test_a_missing_field_offloads_nothing() -> None:
    assert OffloadPolicy("b", field="payload").plan('{"id": 1}', "t", 0, 1) is None


@pytest.mark.parametrize("field", ["", "a..b", "items[0]", "1abc", "a b"])
def test_field_must_be_a_dotted_path(field: str) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_OFFLOAD_S3_FIELD"):
        OffloadPolicy("b", field=field)
