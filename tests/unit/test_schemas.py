"""Schema Registry formats: Avro, Protobuf and JSON Schema records become plain envelopes.

Records are written with confluent-kafka's own serializers into its in-process ``mock://``
registry (no registry server runs here, see docs/schema-registry.md), and read back by the
bridge's decoders through the same client. Failures that are the registry's, not the
record's, are checked against a small HTTP server on the loopback interface answering as a
registry would.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as Field
from google.protobuf.message import Message

from kafka_eventbridge.cli import main
from kafka_eventbridge.errors import ConfigError, FatalError, RecordError, Stage
from kafka_eventbridge.mapping import Mapper, RouteSpec, compile_route
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.schemas import RecordDecoder, build_decoders, plain, registry_client
from kafka_eventbridge.settings import (
    Api,
    MappingSettings,
    ValueFormat,
    load_mapping_settings,
    load_settings,
)
from kafka_eventbridge_testing import free_port

SOURCE = "aws.partner/acme.com/orders"
SECRET = "s3cret-Passw0rd"

ORDER_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "com.example",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "type", "type": "string"},
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            },
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
            {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "raw", "type": "bytes"},
            {"name": "status", "type": {"type": "enum", "name": "S", "symbols": ["NEW", "DONE"]}},
            {"name": "lines", "type": {"type": "array", "items": "long"}},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
)
AT = dt.datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
UID = uuid.UUID("7fda163f-de93-430d-a567-5be772ad6e7a")
ORDER = {
    "id": "o-1",
    "type": "order.created",
    "amount": decimal.Decimal("12.30"),
    "day": dt.date(2026, 1, 1),
    "at": AT,
    "local": dt.datetime(2026, 1, 1, 12, 0, 0, 5),
    "uid": UID,
    "raw": b"\x00\xff",
    "status": "NEW",
    "lines": [1, 2],
    "note": None,
}
ORDER_PLAIN = {
    "id": "o-1",
    "type": "order.created",
    "amount": "12.30",
    "day": "2026-01-01",
    "at": "2026-01-01T12:00:00.123000Z",
    "local": "2026-01-01T12:00:00.000005",
    "uid": str(UID),
    "raw": "AP8=",
    "status": "NEW",
    "lines": [1, 2],
    "note": None,
}
KEY_AVRO = json.dumps(
    {"type": "record", "name": "Key", "fields": [{"name": "customer", "type": "string"}]}
)
ORDER_JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"id": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["id"],
    }
)


@pytest.fixture(autouse=True)
def _no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def url() -> str:
    """A fresh in-process mock registry (each URL has its own store)."""
    return f"mock://{uuid.uuid4().hex}"


def settings(url: str, **values: Any) -> MappingSettings:
    values.setdefault("value_format", ValueFormat.AVRO)
    return MappingSettings(schema_registry_url=url, **values)


def client(url: str) -> SchemaRegistryClient:
    return registry_client(settings(url))


def record(value: bytes | None, *, key: bytes | None = b"k", topic: str = "orders") -> SourceRecord:
    return SourceRecord(topic, 0, 7, 1767225600000, key, value, [])


def context(topic: str = "orders", field: MessageField = MessageField.VALUE) -> Any:
    return SerializationContext(topic, field)


def avro(url: str, value: dict[str, Any], schema: str = ORDER_AVRO, **kw: Any) -> bytes:
    data = AvroSerializer(client(url), schema)(value, context(**kw))
    assert isinstance(data, bytes)
    return data


def mapper(url: str, *, detail: str | None = None, **values: Any) -> Mapper:
    spec = RouteSpec(topics=["^.*"], source=f"'{SOURCE}'", detail_type="value.type", detail=detail)
    mapping = settings(url, **values)
    return Mapper(
        [compile_route(0, spec, Api.PARTNER)],
        api=Api.PARTNER,
        max_bytes=262_144,
        value_format=mapping.value_format,
        **build_decoders(mapping),
    )


def value_decoder(url: str, fmt: ValueFormat = ValueFormat.AVRO) -> RecordDecoder:
    decoder = build_decoders(settings(url, value_format=fmt))["value_decoder"]
    assert decoder is not None
    return decoder


def decode_error(decoder: RecordDecoder, data: bytes) -> RecordError:
    with pytest.raises(RecordError) as caught:
        decoder(data, record(data))
    assert caught.value.stage is Stage.DECODE
    return caught.value


# -- Avro -----------------------------------------------------------------------------------


def test_avro_value_becomes_plain_json_data_for_the_mapping(url: str) -> None:
    entry = mapper(url).map(record(avro(url, ORDER)))
    assert entry is not None
    assert entry.detail_type == "order.created"
    assert orjson.loads(entry.detail) == ORDER_PLAIN


def test_detail_is_the_decoded_value_never_the_wire_bytes(url: str) -> None:
    # The "detail = whole value" shortcut sends the record's bytes as they came: only right
    # for JSON values. Here the bytes start with the magic byte and a schema id.
    data = avro(url, ORDER)
    entry = mapper(url, detail="value").map(record(data))
    assert entry is not None
    assert entry.detail.startswith("{") and orjson.loads(entry.detail) == ORDER_PLAIN


def test_avro_timestamps_are_rfc3339_so_time_expressions_work(url: str) -> None:
    spec = RouteSpec(topics=["orders"], source=f"'{SOURCE}'", time="value.at")
    mapping = settings(url)
    bridge = Mapper(
        [compile_route(0, spec, Api.PARTNER)],
        api=Api.PARTNER,
        max_bytes=262_144,
        value_format=mapping.value_format,
        **build_decoders(mapping),
    )
    entry = bridge.map(record(avro(url, ORDER)))
    assert entry is not None and entry.time == AT


def test_avro_key_is_decoded_when_the_key_format_says_so(url: str) -> None:
    key = avro(url, {"customer": "c-7"}, KEY_AVRO, field=MessageField.KEY)
    spec = RouteSpec(topics=["orders"], source=f"'{SOURCE}'", detail="{customer: key.customer}")
    mapping = settings(url, key_format=ValueFormat.AVRO)
    bridge = Mapper(
        [compile_route(0, spec, Api.PARTNER)],
        api=Api.PARTNER,
        max_bytes=262_144,
        value_format=mapping.value_format,
        **build_decoders(mapping),
    )
    entry = bridge.map(record(avro(url, ORDER), key=key))
    assert entry is not None and orjson.loads(entry.detail) == {"customer": "c-7"}


def test_plain_converts_every_avro_logical_type() -> None:
    assert plain(
        {
            "d": decimal.Decimal("1E+2"),
            "t": dt.time(12, 0, 0, 5000),
            "b": bytearray(b"\x01"),
            "nested": [{"at": AT}],
        }
    ) == {"d": "100", "t": "12:00:00.005000", "b": "AQ==", "nested": [{"at": ORDER_PLAIN["at"]}]}


# -- Protobuf -------------------------------------------------------------------------------


def order_messages() -> tuple[Any, Any]:
    """Order and Order.Line message classes, built at run time (no generated code, no protoc).
    Typed Any: the stubs know no fields of such classes, and types-protobuf's ``Message`` takes
    no field keywords."""
    file = descriptor_pb2.FileDescriptorProto(
        name="shop/orders.proto",
        package="shop.v1",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    order = file.message_type.add(name="Order")
    optional, repeated = Field.LABEL_OPTIONAL, Field.LABEL_REPEATED
    order.field.add(name="order_id", number=1, type=Field.TYPE_STRING, label=optional)
    order.field.add(name="amount_cents", number=2, type=Field.TYPE_INT64, label=optional)
    order.field.add(
        name="created_at",
        number=3,
        type=Field.TYPE_MESSAGE,
        type_name=".google.protobuf.Timestamp",
        label=optional,
    )
    order.field.add(
        name="status",
        number=4,
        type=Field.TYPE_ENUM,
        type_name=".shop.v1.Order.Status",
        label=optional,
    )
    order.field.add(name="tags", number=5, type=Field.TYPE_STRING, label=repeated)
    order.field.add(name="blob", number=6, type=Field.TYPE_BYTES, label=optional)
    order.field.add(name="note", number=7, type=Field.TYPE_STRING, label=optional)
    status = order.enum_type.add(name="Status")
    status.value.add(name="STATUS_UNSPECIFIED", number=0)
    status.value.add(name="CREATED", number=1)
    line = order.nested_type.add(name="Line")
    line.field.add(name="sku", number=1, type=Field.TYPE_STRING, label=optional)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.v1.Order")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.v1.Order.Line")),
    )


def protobuf(url: str, message: Message, topic: str = "orders") -> bytes:
    serializer = ProtobufSerializer(type(message), client(url), {"use.deprecated.format": False})
    data = serializer(message, context(topic))
    assert isinstance(data, bytes)
    return data


def test_protobuf_decodes_with_only_the_registered_schema(url: str) -> None:
    order_class, line_class = order_messages()
    order: Any = order_class(
        order_id="o-1", amount_cents=1999, status=1, tags=["a"], blob=b"\x00\xff"
    )
    order.created_at.FromJsonString("2026-01-01T12:00:00.123Z")
    decode = value_decoder(url, ValueFormat.PROTOBUF)
    data = protobuf(url, order)
    assert decode(data, record(data)) == {
        "order_id": "o-1",
        "amount_cents": "1999",  # ProtoJSON: int64 as a string
        "created_at": "2026-01-01T12:00:00.123Z",
        "status": "CREATED",
        "tags": ["a"],
        "blob": "AP8=",
        "note": "",  # proto3 defaults are shown, not left out
    }
    # A nested message type: the wire format's message indexes pick it out of the file.
    nested = protobuf(url, line_class(sku="sku-1"), topic="lines")
    assert decode(nested, record(nested, topic="lines")) == {"sku": "sku-1"}


def test_confluent_protobuf_deserializer_still_needs_a_generated_class(url: str) -> None:
    # Why schemas.py builds message classes itself. If this starts to pass without a class,
    # the dynamic class building can go.
    with pytest.raises(AttributeError):
        ProtobufDeserializer(None, {}, client(url))


# -- JSON Schema ----------------------------------------------------------------------------


def json_schema(url: str, value: dict[str, Any]) -> bytes:
    data = JSONSerializer(ORDER_JSON_SCHEMA, client(url))(value, context())
    assert isinstance(data, bytes)
    return data


def test_json_schema_value_is_decoded_and_validated(url: str) -> None:
    decode = value_decoder(url, ValueFormat.JSON_SCHEMA)
    data = json_schema(url, {"id": "o-1", "n": 3})
    assert decode(data, record(data)) == {"id": "o-1", "n": 3}
    # A payload that its own schema refuses; the reason names the place, not the value.
    bad = data[:5] + b'{"id": "o-2", "n": "private-value"}'
    error = decode_error(decode, bad)
    assert error.code == "SchemaMismatch"
    assert "/n" in error.message and "private-value" not in error.message


# -- record-permanent failures: dead letters at stage decode ----------------------------------


def test_a_value_without_the_magic_byte_is_dead_lettered(url: str) -> None:
    error = decode_error(value_decoder(url), b'{"id": "o-1"}')
    assert error.code == "InvalidMagicByte"
    assert "magic byte" in error.message and "7b" in error.message


def test_an_unknown_schema_id_is_dead_lettered(url: str) -> None:
    error = decode_error(value_decoder(url), b"\x00\x00\x00\x30\x39" + b"\x02")
    assert error.code == "UnknownSchema"


def test_a_payload_that_does_not_match_its_schema_is_dead_lettered(url: str) -> None:
    data = avro(url, ORDER)
    assert decode_error(value_decoder(url), data[:8]).code == "SchemaMismatch"
    assert decode_error(value_decoder(url), data[:3]).code == "SchemaMismatch"


def test_mapper_refuses_a_registry_format_without_a_decoder() -> None:
    spec = RouteSpec(topics=["^.*"], source=f"'{SOURCE}'")
    with pytest.raises(ValueError, match="value_decoder"):
        Mapper(
            [compile_route(0, spec, Api.PARTNER)],
            api=Api.PARTNER,
            max_bytes=262_144,
            value_format=ValueFormat.AVRO,
        )


# -- keys without a registry ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_format", "key", "expected"),
    [
        (ValueFormat.STRING, b"c-\xff", "c-\\xff"),  # today's behaviour: escaped, never fails
        (ValueFormat.JSON, b'{"c": 7}', {"c": 7}),
        (ValueFormat.BYTES, b"\x00\xff", "AP8="),
    ],
)
def test_key_formats(key_format: ValueFormat, key: bytes, expected: Any) -> None:
    mapping = MappingSettings(key_format=key_format, map_source=f"'{SOURCE}'")
    spec = RouteSpec(topics=["^.*"], source=f"'{SOURCE}'", detail="{k: key}")
    bridge = Mapper(
        [compile_route(0, spec, Api.PARTNER)],
        api=Api.PARTNER,
        max_bytes=262_144,
        **build_decoders(mapping),
    )
    entry = bridge.map(record(b"{}", key=key))
    assert entry is not None and orjson.loads(entry.detail) == {"k": expected}


def test_a_key_that_is_not_json_is_dead_lettered_as_a_key() -> None:
    decoder = build_decoders(MappingSettings(key_format=ValueFormat.JSON))["key_decoder"]
    assert decoder is not None
    with pytest.raises(RecordError) as caught:
        decoder(b"not json", record(b"{}"))
    assert caught.value.code == "InvalidJson" and caught.value.message.startswith("key ")


# -- the registry's failures are not the record's ---------------------------------------------


class Registry(BaseHTTPRequestHandler):
    """Answers every request with the status and body a test sets; remembers the auth."""

    status: ClassVar[int] = 200
    body: ClassVar[bytes] = b"{}"
    seen_auth: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        Registry.seen_auth.append(self.headers.get("Authorization"))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    Registry.seen_auth = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def answering(status: int, body: dict[str, Any] | bytes) -> None:
    Registry.status = status
    Registry.body = body if isinstance(body, bytes) else json.dumps(body).encode()


def http_decoder(url: str, **values: Any) -> RecordDecoder:
    values.setdefault("schema_registry_max_retries", 0)
    decoder = build_decoders(settings(url, **values))["value_decoder"]
    assert decoder is not None
    return decoder


def fatal(decoder: RecordDecoder) -> FatalError:
    data = b"\x00\x00\x00\x00\x05\x02"
    with pytest.raises(FatalError) as caught:
        decoder(data, record(data))
    return caught.value


def test_an_unreachable_registry_is_fatal_not_a_dead_letter() -> None:
    port = free_port()  # nothing listens there
    error = fatal(http_decoder(f"http://127.0.0.1:{port}", schema_registry_timeout_seconds=2))
    assert error.code == "SchemaRegistryUnavailable"


def test_a_failing_registry_is_fatal(registry: str) -> None:
    answering(503, {"error_code": 50003, "message": "unavailable"})
    assert fatal(http_decoder(registry)).code == "SchemaRegistryUnavailable"


def test_refused_credentials_are_fatal_and_basic_auth_is_sent(registry: str) -> None:
    answering(401, {"error_code": 401, "message": "Unauthorized"})
    error = fatal(http_decoder(registry, schema_registry_basic_auth_user_info=f"bridge:{SECRET}"))
    assert error.code == "SchemaRegistryAuthFailed" and SECRET not in error.message
    expected = "Basic " + base64.b64encode(f"bridge:{SECRET}".encode()).decode()
    assert Registry.seen_auth == [expected]


def test_a_schema_the_registry_does_not_have_is_the_records_fault(registry: str) -> None:
    answering(404, {"error_code": 40403, "message": "Schema 5 not found"})
    data = b"\x00\x00\x00\x00\x05\x02"
    assert decode_error(http_decoder(registry), data).code == "UnknownSchema"


def test_a_404_that_is_not_the_registrys_is_fatal(registry: str) -> None:
    # A URL that misses the registry's base path: every record would "not exist".
    answering(404, b"<html>Not Found</html>")
    error = fatal(http_decoder(registry))
    assert error.code == "SchemaRegistryError" and "BRIDGE_SCHEMA_REGISTRY_URL" in error.message


# -- settings -------------------------------------------------------------------------------

REQUIRED = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "BRIDGE_KAFKA_TOPICS": "orders"}


def problems(**variables: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings({**REQUIRED, **variables})
    return caught.value.problems


def test_schema_registry_defaults_keep_todays_behaviour() -> None:
    mapping = load_settings(REQUIRED).mapping
    assert mapping.key_format is ValueFormat.STRING
    assert mapping.schema_registry_url is None
    assert mapping.schema_registry_basic_auth_user_info is None
    assert mapping.schema_registry_timeout_seconds == 10
    assert mapping.schema_registry_max_retries == 3
    assert build_decoders(mapping) == {"value_decoder": None, "key_decoder": None}


def test_registry_formats_need_the_registry_url() -> None:
    assert problems(BRIDGE_VALUE_FORMAT="protobuf", BRIDGE_KEY_FORMAT="avro") == [
        "BRIDGE_SCHEMA_REGISTRY_URL: required with BRIDGE_VALUE_FORMAT=protobuf (records carry "
        "a schema id that is looked up there)",
        "BRIDGE_SCHEMA_REGISTRY_URL: required with BRIDGE_KEY_FORMAT=avro (records carry a "
        "schema id that is looked up there)",
    ]


def test_registry_secrets_are_never_shown(tmp_path: Path) -> None:
    found = problems(
        BRIDGE_VALUE_FORMAT="json-schema",
        BRIDGE_SCHEMA_REGISTRY_URL=f"https://bridge:{SECRET}@registry.example.com",
        BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=SECRET,
        BRIDGE_SCHEMA_REGISTRY_SSL_CA_LOCATION=str(tmp_path / "missing.pem"),
    )
    assert len(found) == 3 and SECRET not in "\n".join(found)
    assert "must not carry credentials" in found[0]
    assert "must be user:password" in found[1]
    settings = load_settings(
        {
            **REQUIRED,
            "BRIDGE_VALUE_FORMAT": "avro",
            "BRIDGE_SCHEMA_REGISTRY_URL": "https://registry.example.com",
            "BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"bridge:{SECRET}",
        }
    )
    view = settings.redacted()
    assert view["BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"] == "**********"
    assert view["BRIDGE_VALUE_FORMAT"] == "avro"
    assert SECRET not in repr(view) and SECRET not in repr(settings)


def test_the_registry_url_must_be_http() -> None:
    assert problems(BRIDGE_SCHEMA_REGISTRY_URL="registry:8081") == [
        "BRIDGE_SCHEMA_REGISTRY_URL: must be http(s)://host[:port][/path], several separated "
        "by commas"
    ]


def test_map_command_checks_registry_settings_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_VALUE_FORMAT", "avro")
    with pytest.raises(ConfigError, match="BRIDGE_SCHEMA_REGISTRY_URL: required"):
        load_mapping_settings()


def test_map_command_decodes_wire_format_samples(
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = avro(url, ORDER)
    key = avro(url, {"customer": "c-7"}, KEY_AVRO, field=MessageField.KEY)
    samples = tmp_path / "samples.jsonl"
    lines = [
        {"topic": "orders", "value_base64": base64.b64encode(data).decode(), "key_base64": ""},
        {"topic": "orders", "value_text": '{"not": "avro"}'},
    ]
    lines[0]["key_base64"] = base64.b64encode(key).decode()
    samples.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    for name, value in {
        "BRIDGE_VALUE_FORMAT": "avro",
        "BRIDGE_KEY_FORMAT": "avro",
        "BRIDGE_SCHEMA_REGISTRY_URL": url,
        "BRIDGE_MAP_SOURCE": f"'{SOURCE}'",
        "BRIDGE_MAP_DETAIL": "{id: value.id, customer: key.customer}",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(["map", str(samples)])
    assert exited.value.code == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert json.loads(first["entry"]["Detail"]) == {"id": "o-1", "customer": "c-7"}
    assert second["dead_letter"]["code"] == "InvalidMagicByte"
