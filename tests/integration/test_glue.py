"""AWS Glue Schema Registry formats against moto's Glue.

Avro and JSON Schema records are written by the Python port of Glue's serializers
(``aws-glue-schema-registry``, a community package: it registers the schema in the registry
and frames the payload as the Java serializers do). That package has no Protobuf, so Protobuf
records are framed by :func:`glue_protobuf_record`, written from the published format (Java's
``ProtobufWireFormatEncoder`` and ``MessageIndexFinder``), with the message bytes encoded by
hand from the Protobuf wire format.
"""

from __future__ import annotations

import decimal
import json
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from aws_schema_registry import DataAndSchema, KafkaSerializer, SchemaRegistryClient
from aws_schema_registry.avro import AvroSchema
from aws_schema_registry.codec import encode
from aws_schema_registry.jsonschema import JsonSchema

from kafka_eventbridge.errors import FatalError, RecordError, Stage
from kafka_eventbridge.mapping import Mapper, RouteSpec, compile_route
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.schemas import build_decoders
from kafka_eventbridge.settings import Api, MappingSettings, ValueFormat
from kafka_eventbridge_testing.moto import client, moto_server
from tests.integration.aws_peers import reset_moto
from tests.integration.conftest import Scenario
from tests.integration.support import headers_of, produce, read_all, wait_until

pytestmark = pytest.mark.integration

REGISTRY = "orders-registry"
SOURCE = "aws.partner/example.com/orders"

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "com.example",
    "fields": [
        {"name": "id", "type": "string"},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
# Version 2 adds a field with a default (a BACKWARD-compatible change).
ORDER_V2 = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "channel", "type": "string", "default": "web"}],
}
ORDER_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["id", "qty"],
}
ORDER_PROTO = """
syntax = "proto3";
package shop;

import "google/protobuf/timestamp.proto";

message Order {
  string id = 1;
  int64 qty = 2;
  repeated Line lines = 3;
  google.protobuf.Timestamp at = 4;
  message Line {
    string sku = 1;
  }
}

message Customer {
  string name = 1;
}
"""
# Glue numbers message types by their full names: shop.Customer, shop.Order, shop.Order.Line.
PROTO_INDEX = {"shop.Customer": 0, "shop.Order": 1, "shop.Order.Line": 2}


@pytest.fixture(scope="module")
def glue(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's Glue with an empty registry; the bridge's clients are pointed at it."""
    with moto_server() as url:
        reset_moto(url)
        monkeypatch_module.setenv("AWS_ENDPOINT_URL_GLUE", url)
        monkeypatch_module.setenv("AWS_ACCESS_KEY_ID", "moto")
        monkeypatch_module.setenv("AWS_SECRET_ACCESS_KEY", "moto")
        monkeypatch_module.setenv("AWS_REGION", "us-east-1")
        monkeypatch_module.delenv("BRIDGE_AWS_ROLE_ARN", raising=False)
        glue = client("glue", url)
        glue.create_registry(RegistryName=REGISTRY)
        glue.create_registry(RegistryName="other-registry")
        yield glue
        reset_moto(url)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def serializer(glue: Any, registry: str = REGISTRY) -> KafkaSerializer:
    """The reference serializer: registers (or finds) the schema, frames the payload."""
    return KafkaSerializer(SchemaRegistryClient(glue, registry_name=registry))


def register(glue: Any, name: str, data_format: str, definition: str) -> uuid.UUID:
    """A schema (or a new version of it) registered the way Glue's console or CLI does."""
    try:
        reply = glue.create_schema(
            RegistryId={"RegistryName": REGISTRY},
            SchemaName=name,
            DataFormat=data_format,
            Compatibility="NONE",
            SchemaDefinition=definition,
        )
    except glue.exceptions.AlreadyExistsException:
        reply = glue.register_schema_version(
            SchemaId={"RegistryName": REGISTRY, "SchemaName": name}, SchemaDefinition=definition
        )
    return uuid.UUID(reply["SchemaVersionId"])


def record(value: bytes, topic: str = "orders", key: bytes | None = None) -> SourceRecord:
    return SourceRecord(topic, 0, 7, 1767225600000, key, value, [])


def mapper(fmt: ValueFormat, key_format: ValueFormat = ValueFormat.STRING, **glue: Any) -> Mapper:
    settings = MappingSettings(value_format=fmt, key_format=key_format, **glue)
    route = compile_route(0, RouteSpec(topics=["orders"], source=f"'{SOURCE}'"), Api.PARTNER)
    return Mapper(
        [route], api=Api.PARTNER, max_bytes=262_144, value_format=fmt, **build_decoders(settings)
    )


def detail(mapper: Mapper, value: bytes) -> Any:
    entry = mapper.map(record(value))
    assert entry is not None
    return json.loads(entry.detail)


def dead_letter(mapper: Mapper, value: bytes) -> RecordError:
    with pytest.raises(RecordError) as caught:
        mapper.map(record(value))
    assert caught.value.stage is Stage.DECODE
    return caught.value


def count_lookups(mapper: Mapper) -> list[str]:
    """The schema version ids the mapper's value decoder asks Glue for, as it asks."""
    decoder: Any = mapper.value_decoder
    lookups: list[str] = []
    decoder.client.meta.events.register(
        "before-parameter-build.glue.GetSchemaVersion",
        lambda params, **_: lookups.append(params["SchemaVersionId"]),
    )
    return lookups


# -- Avro -----------------------------------------------------------------------------------


def test_avro_from_the_reference_serializer_decodes_with_each_writer_schema(glue: Any) -> None:
    write = serializer(glue)

    v1 = write.serialize(
        "orders-avro",
        DataAndSchema(
            {"id": "o-1", "amount": decimal.Decimal("12.30"), "at": 1767225600123},
            AvroSchema(json.dumps(ORDER_V1)),
        ),
    )
    v2 = write.serialize(
        "orders-avro",
        DataAndSchema(
            {"id": "o-2", "amount": decimal.Decimal("0.05"), "at": 1767225600000, "channel": "app"},
            AvroSchema(json.dumps(ORDER_V2)),
        ),
    )
    assert v1[0] == 3 and v2[0] == 3 and v1[2:18] != v2[2:18]  # two schema versions

    bridge = mapper(ValueFormat.GLUE_AVRO)
    assert detail(bridge, v1) == {
        "id": "o-1",
        "amount": "12.30",
        "at": "2026-01-01T00:00:00.123000Z",
    }
    assert detail(bridge, v2) == {
        "id": "o-2",
        "amount": "0.05",
        "at": "2026-01-01T00:00:00Z",
        "channel": "app",
    }


def test_zlib_compressed_payloads_decode(glue: Any) -> None:
    version = register(glue, "orders-zlib", "AVRO", json.dumps(ORDER_V1))

    body = AvroSchema(json.dumps(ORDER_V1)).write(
        {"id": "o-3", "amount": decimal.Decimal("1.00"), "at": 0}
    )
    framed = encode(body, version, compression=True)
    assert framed[1] == 5

    assert detail(mapper(ValueFormat.GLUE_AVRO), framed)["id"] == "o-3"


def test_keys_decode_in_their_own_glue_format(glue: Any) -> None:
    key_schema = {
        "type": "record",
        "name": "Key",
        "fields": [{"name": "customer", "type": "string"}],
    }
    key = KafkaSerializer(
        SchemaRegistryClient(glue, registry_name=REGISTRY), is_key=True
    ).serialize("orders", DataAndSchema({"customer": "c-7"}, AvroSchema(json.dumps(key_schema))))
    value = JsonSchema(json.dumps(ORDER_JSON_SCHEMA))
    framed = serializer(glue).serialize("orders", DataAndSchema({"id": "o-4", "qty": 2}, value))
    bridge = mapper(ValueFormat.GLUE_JSON_SCHEMA, key_format=ValueFormat.GLUE_AVRO)
    route = compile_route(
        0,
        RouteSpec(topics=["orders"], source=f"'{SOURCE}'", detail="{key: key, value: value}"),
        Api.PARTNER,
    )
    bridge.routes = [route]
    bridge._by_topic.clear()

    entry = bridge.map(record(framed, key=key))
    assert entry is not None
    assert json.loads(entry.detail) == {
        "key": {"customer": "c-7"},
        "value": {"id": "o-4", "qty": 2},
    }


# -- JSON Schema ----------------------------------------------------------------------------


def test_json_schema_records_are_validated_against_their_schema(glue: Any) -> None:
    schema = JsonSchema(json.dumps(ORDER_JSON_SCHEMA))
    good = serializer(glue).serialize("orders", DataAndSchema({"id": "o-5", "qty": 3}, schema))
    version = uuid.UUID(bytes=good[2:18])
    bad = encode(b'{"id": "o-6", "qty": 0}', version)  # qty below the schema's minimum

    bridge = mapper(ValueFormat.GLUE_JSON_SCHEMA)
    assert detail(bridge, good) == {"id": "o-5", "qty": 3}
    error = dead_letter(bridge, bad)
    assert error.code == "SchemaMismatch"
    assert "/qty" in error.message and "minimum" in error.message
    assert "0" not in error.message.split("rule")[-1]  # the payload is never quoted


# -- Protobuf -------------------------------------------------------------------------------


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _text(number: int, text: str) -> bytes:
    data = text.encode()
    return _field(number, 2, _varint(len(data)) + data)


def glue_protobuf_record(version: uuid.UUID, message_type: str, message: bytes) -> bytes:
    """Glue's Protobuf framing: header, then the message index as a varint, then the message."""
    return bytes(encode(_varint(PROTO_INDEX[message_type]) + message, version))


def test_protobuf_records_decode_by_their_message_index(glue: Any) -> None:
    version = register(glue, "shop", "PROTOBUF", ORDER_PROTO)
    timestamp = _field(1, 0, _varint(1767225600))  # google.protobuf.Timestamp.seconds
    order = (
        _text(1, "o-7")
        + _field(2, 0, _varint(4))
        + _field(3, 2, _varint(len(_text(1, "sku-1"))) + _text(1, "sku-1"))
        + _field(4, 2, _varint(len(timestamp)) + timestamp)
    )
    bridge = mapper(ValueFormat.GLUE_PROTOBUF)

    assert detail(bridge, glue_protobuf_record(version, "shop.Order", order)) == {
        "id": "o-7",
        "qty": "4",  # int64 as a string: Protobuf's JSON mapping
        "lines": [{"sku": "sku-1"}],
        "at": "2026-01-01T00:00:00Z",
    }
    assert detail(bridge, glue_protobuf_record(version, "shop.Customer", _text(1, "Ada"))) == {
        "name": "Ada"
    }
    assert detail(bridge, glue_protobuf_record(version, "shop.Order.Line", _text(1, "x"))) == {
        "sku": "x"
    }
    error = dead_letter(bridge, encode(_varint(9) + _text(1, "a"), version))
    assert error.code == "SchemaMismatch" and "message index 9" in error.message


def test_a_proto_definition_that_does_not_compile_is_an_invalid_schema(glue: Any) -> None:
    version = register(glue, "broken", "PROTOBUF", "syntax = 'proto3'; message {")
    error = dead_letter(mapper(ValueFormat.GLUE_PROTOBUF), encode(b"\x00", version))
    assert error.code == "InvalidSchema"


# -- what is dead-lettered ------------------------------------------------------------------


def test_records_not_in_the_glue_wire_format_are_dead_lettered(glue: Any) -> None:
    version = register(glue, "orders-frames", "JSON", json.dumps(ORDER_JSON_SCHEMA))
    bridge = mapper(ValueFormat.GLUE_JSON_SCHEMA)
    confluent = b"\x00\x00\x00\x00\x01" + b'{"id": "x", "qty": 1}'
    cases = {
        "InvalidMagicByte": [confluent, b'{"id": "x"}', b"\x03\x00short"],
        "InvalidCompression": [
            b"\x03\x07" + version.bytes + b"{}",  # no such compression byte
            b"\x03\x05" + version.bytes + b"not zlib",
            b"\x03\x05" + version.bytes + zlib.compress(b'{"id": "x", "qty": 1}')[:-4],
        ],
        "UnknownSchema": [encode(b"{}", uuid.uuid4())],
        "SchemaMismatch": [encode(b"not json", version)],
    }
    for code, values in cases.items():
        for value in values:
            assert dead_letter(bridge, value).code == code, value


def test_a_schema_of_another_data_format_or_registry_is_refused(glue: Any) -> None:
    json_version = register(glue, "orders-json", "JSON", json.dumps(ORDER_JSON_SCHEMA))
    avro = mapper(ValueFormat.GLUE_AVRO)
    lookups = count_lookups(avro)
    for _ in range(3):
        error = dead_letter(avro, encode(b"{}", json_version))
        assert error.code == "WrongDataFormat"
    assert len(lookups) == 1  # the refusal is remembered like a usable schema

    elsewhere = KafkaSerializer(SchemaRegistryClient(glue, registry_name="other-registry"))
    value = elsewhere.serialize(
        "orders", DataAndSchema({"id": "o-8", "qty": 1}, JsonSchema(json.dumps(ORDER_JSON_SCHEMA)))
    )
    assert detail(mapper(ValueFormat.GLUE_JSON_SCHEMA), value) == {"id": "o-8", "qty": 1}
    restricted = mapper(ValueFormat.GLUE_JSON_SCHEMA, glue_registry_name=REGISTRY)
    error = dead_letter(restricted, value)
    assert error.code == "UnknownSchema" and "other-registry" in error.message


# -- the cache ------------------------------------------------------------------------------


def test_schema_versions_are_looked_up_once_and_the_cache_is_bounded(glue: Any) -> None:
    versions = [
        register(glue, "cached", "JSON", json.dumps({"type": "object", "title": f"v{n}"}))
        for n in range(3)
    ]
    records = [encode(b'{"n": 1}', version) for version in versions]
    bridge = mapper(ValueFormat.GLUE_JSON_SCHEMA, glue_cache_size=2)
    lookups = count_lookups(bridge)

    for value in records[:2] * 5:
        detail(bridge, value)
    assert len(lookups) == 2  # each version once, however many records carry it

    detail(bridge, records[2])  # a third version evicts the least recently used (v0)
    detail(bridge, records[1])
    detail(bridge, records[0])
    assert lookups[2:] == [str(versions[2]), str(versions[0])]


# -- not the record's fault -----------------------------------------------------------------


def test_an_unreachable_glue_endpoint_is_fatal(glue: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka_eventbridge_testing import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", f"http://127.0.0.1:{free_port()}")
    errors: list[None] = []
    settings = MappingSettings(value_format=ValueFormat.GLUE_AVRO, schema_registry_max_retries=0)
    decode = build_decoders(settings, on_registry_error=lambda: errors.append(None))[
        "value_decoder"
    ]
    assert decode is not None
    value = encode(b"\x02", uuid.uuid4())
    with pytest.raises(FatalError) as caught:
        decode(value, record(value))
    assert caught.value.code == "GlueSchemaRegistryUnavailable"
    assert len(errors) == 1  # counted as a registry error (the dependency-errors metric)


# -- end to end -----------------------------------------------------------------------------


def test_the_bridge_delivers_glue_records_and_dead_letters_the_rest(
    glue: Any, scenario: Scenario
) -> None:
    """``kafka-eventbridge run``: Kafka in, moto's Glue for the schemas, the stand-in out."""
    fake = scenario.fake
    name = scenario.topic(partitions=1)
    schema = AvroSchema(json.dumps(ORDER_V2))
    orders = [
        {
            "id": f"o-{n}",
            "amount": decimal.Decimal(f"{n}.50"),
            "at": 1767225600000,
            "channel": "web",
        }
        for n in range(20)
    ]
    write = serializer(glue)
    values = [write.serialize(name, DataAndSchema(order, schema)) for order in orders]
    values.insert(5, b"\x00\x00\x00\x00\x01" + values[0][18:])  # Confluent framing
    produce(scenario.broker, name, values)

    glue_url = glue.meta.endpoint_url
    scenario.bridge(name, BRIDGE_VALUE_FORMAT="glue-avro", AWS_ENDPOINT_URL_GLUE=glue_url)
    assert fake.wait_for_accepted(20, 60), f"accepted: {fake.stats().entries_accepted}"
    (dead,) = read_all(scenario.broker, scenario.dlq, expected=1, timeout=30)
    wait_until(lambda: scenario.committed(name, 1)[0] == len(values), 30, "commit")

    details = sorted((e.detail for e in fake.entries()), key=lambda d: int(d["id"][2:]))
    assert [d["id"] for d in details] == [o["id"] for o in orders]
    assert details[3]["amount"] == "3.50" and details[3]["at"] == "2026-01-01T00:00:00Z"
    assert dead.value() == values[5]
    assert headers_of(dead)["bridge.error.code"] == b"InvalidMagicByte"
    assert headers_of(dead)["bridge.error.stage"] == b"decode"
