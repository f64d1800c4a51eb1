"""Schema Registry formats end to end: a real broker, records written by confluent-kafka's
serializers, the bridge delivering them to the EventBridge stand-in as plain JSON.

No registry server can run here (docs/schema-registry.md says what was tried), so the
registry is confluent-kafka's in-process ``mock://`` one. It lives in this process only, so
these bridges run in process too (``Bridge.run`` on a thread, which is all ``kafka-eventbridge
run`` does besides signals and HTTP), sharing the registry client with the serializers. What
needs no schema, a registry that cannot be reached, runs as the real process.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as Field

from kafka_eventbridge.app import Bridge
from kafka_eventbridge.schemas import registry_client
from kafka_eventbridge.settings import load_settings
from kafka_eventbridge_testing import free_port
from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge
from tests.integration.conftest import Scenario
from tests.integration.support import (
    assert_one_fatal_line,
    bridge_env,
    committed,
    headers_of,
    produce,
    read_all,
    wait_until,
)

pytestmark = pytest.mark.integration

RECORDS = 20
BAD_AT = 10  # offset of the record that is not in the wire format

AVRO_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "type", "type": "string"},
            {"name": "n", "type": "long"},
        ],
    }
)
JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "n": {"type": "integer"},
        },
        "required": ["id", "type", "n"],
    }
)


def protobuf_order_class() -> Any:
    file = descriptor_pb2.FileDescriptorProto(name="order.proto", package="shop", syntax="proto3")
    order = file.message_type.add(name="Order")
    order.field.add(name="id", number=1, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL)
    order.field.add(name="type", number=2, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL)
    order.field.add(name="n", number=3, type=Field.TYPE_INT32, label=Field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def serializer(fmt: str, client: Any) -> Callable[[dict[str, Any], Any], bytes]:
    if fmt == "avro":
        return AvroSerializer(client, AVRO_SCHEMA)  # type: ignore[no-any-return]
    if fmt == "json-schema":
        return JSONSerializer(JSON_SCHEMA, client)  # type: ignore[no-any-return]
    order_class = protobuf_order_class()
    protobuf = ProtobufSerializer(order_class, client, {"use.deprecated.format": False})
    return lambda value, ctx: protobuf(order_class(**value), ctx)


@pytest.fixture
def in_process_bridge(
    kafka_broker: KafkaBroker, fake: FakeEventBridge, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Bridge]]:
    """Starts ``Bridge.run`` on a thread; stops it (drain, commit) at the end of the test."""
    started: list[tuple[Bridge, threading.Thread]] = []
    for name, value in bridge_env(kafka_broker, "-", "-", fake.url).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)

    def start(topic: str, group: str, **extra: str) -> Bridge:
        env = bridge_env(kafka_broker, topic, group, fake.url, **extra)
        bridge = Bridge(load_settings(env))
        thread = threading.Thread(target=bridge.run, name=f"bridge-{group}", daemon=True)
        thread.start()
        started.append((bridge, thread))
        return bridge

    yield start
    for bridge, thread in started:
        bridge.stop()
        thread.join(60)
        assert not thread.is_alive(), "bridge did not stop within 60s"


@pytest.mark.parametrize("fmt", ["avro", "protobuf", "json-schema"])
def test_records_are_delivered_as_plain_json_and_bad_framing_is_dead_lettered(
    fmt: str,
    kafka_broker: KafkaBroker,
    fake: FakeEventBridge,
    topic: Callable[..., str],
    group: str,
    dlq: str,
    in_process_bridge: Callable[..., Bridge],
) -> None:
    url = f"mock://{uuid.uuid4().hex}"
    env = {"BRIDGE_VALUE_FORMAT": fmt, "BRIDGE_SCHEMA_REGISTRY_URL": url}
    client = registry_client(load_settings(bridge_env(kafka_broker, "t", "g", "-", **env)).mapping)
    name = topic(partitions=1)
    serialize = serializer(fmt, client)
    context = SerializationContext(name, MessageField.VALUE)
    orders = [{"id": f"{fmt}-{i}", "type": "order.created", "n": i} for i in range(RECORDS)]
    values = [serialize(order, context) for order in orders]
    not_wire_format = orjson.dumps(orders[0])  # a producer that forgot the serializer
    values.insert(BAD_AT, not_wire_format)
    produce(kafka_broker, name, values, headers=[("trace-id", b"abc")])

    in_process_bridge(name, group, **env)
    assert fake.wait_for_accepted(RECORDS, 60), f"accepted: {fake.stats().entries_accepted}"
    (dead,) = read_all(kafka_broker, dlq, expected=1, timeout=30)
    wait_until(lambda: committed(kafka_broker, group, name, 1)[0] == len(values), 30, "commit")

    details = sorted((e.detail for e in fake.entries()), key=lambda d: int(d["n"]))
    # Avro and JSON Schema longs are numbers; ProtoJSON writes int64 as strings, int32 not.
    assert details == orders
    assert {e.entry["DetailType"] for e in fake.entries()} == {"order.created"}
    headers = headers_of(dead)
    assert dead.value() == not_wire_format  # byte for byte
    assert headers["bridge.error.stage"] == b"decode"
    assert headers["bridge.error.code"] == b"InvalidMagicByte"
    assert headers["bridge.source.offset"] == str(BAD_AT).encode()
    assert headers["trace-id"] == b"abc"


def test_an_unreachable_registry_is_fatal_and_dead_letters_nothing(scenario: Scenario) -> None:
    name = scenario.topic(partitions=1)
    # Avro in the wire format (magic byte, schema id 1), whose schema cannot be fetched.
    produce(scenario.broker, name, [b"\x00\x00\x00\x00\x01\x02x\x02y\x02"] * 5)
    process = scenario.bridge(
        name,
        BRIDGE_VALUE_FORMAT="avro",
        BRIDGE_SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{free_port()}",
        BRIDGE_SCHEMA_REGISTRY_MAX_RETRIES="1",
        BRIDGE_SCHEMA_REGISTRY_TIMEOUT_SECONDS="2",
    )
    assert_one_fatal_line(process, "SchemaRegistryUnavailable")
    assert scenario.committed(name, 1)[0] == 0
    assert read_all(scenario.broker, scenario.dlq, expected=1, timeout=3) == []
    assert scenario.fake.stats().entries_accepted == 0
