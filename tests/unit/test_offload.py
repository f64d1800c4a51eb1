from __future__ import annotations

import hashlib

import orjson
import pytest

from kafka_eventbridge.errors import ConfigError, RecordError
from kafka_eventbridge.mapping import Mapper, RouteSpec, compile_route
from kafka_eventbridge.offload import MARKER, OffloadPolicy
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.settings import Api


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


def _mapper(max_bytes: int, field: str | None = None) -> Mapper:
    spec = RouteSpec(topics=["orders"], source="'aws.partner/example.com/orders'")
    return Mapper(
        [compile_route(0, spec, Api.PARTNER)],
        api=Api.PARTNER,
        max_bytes=max_bytes,
        offload=OffloadPolicy("big-events", field=field),
    )


def _record(value: dict[str, object], offset: int = 3) -> SourceRecord:
    return SourceRecord("orders", 1, offset, 1767225600000, None, orjson.dumps(value), [])


def test_the_mapper_offloads_only_entries_over_the_limit() -> None:
    mapper = _mapper(max_bytes=2_000)
    small = mapper.map(_record({"id": 1, "blob": "x" * 100}))
    assert small is not None and small.upload is None
    large = mapper.map(_record({"id": 2, "blob": "x" * 50_000}))
    assert large is not None and large.upload is not None
    assert large.size <= 2_000
    assert orjson.loads(large.upload.body)["blob"] == "x" * 50_000
    assert orjson.loads(large.detail)[MARKER]["key"] == large.upload.key


def test_an_entry_still_too_large_after_offloading_is_dead_lettered() -> None:
    # Only the named field goes to S3; the rest of the Detail alone is over the limit.
    mapper = _mapper(max_bytes=2_000, field="attachment")
    with pytest.raises(RecordError) as caught:
        mapper.map(_record({"notes": "y" * 5_000, "attachment": "z" * 5_000}))
    assert caught.value.code == "EntryTooLarge"
