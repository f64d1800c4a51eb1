"""CPU per record of the registry decoders: Glue Avro (plain and zlib) beside Confluent Avro.

The same record and schema through each decoder, writer schema already cached (the steady
state: a schema version is looked up once). The Glue client is a stand-in that answers
``GetSchemaVersion`` from memory and counts the calls; the Confluent side uses
confluent-kafka's in-process ``mock://`` registry. Also the one-off cost of compiling a
Glue Protobuf ``.proto`` with protoc, paid once per schema version.

CPU time, medians of ``--repeat``. Run as ``python -m benchmarks.decode``.
"""

from __future__ import annotations

import argparse
import decimal
import io
import statistics
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import fastavro
import orjson
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.schemas import GlueDecoder, RegistryDecoder, registry_client
from kafka_eventbridge.settings import MappingSettings, ValueFormat

SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "type", "type": "string"},
        {"name": "n", "type": "long"},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
    ],
}
ORDER = {"id": "o-1", "type": "order.created", "n": 7, "amount": decimal.Decimal("12.30")}
PROTO = """
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Order { string id = 1; google.protobuf.Timestamp at = 2; message Line { string sku = 1; } }
"""


class MemoryGlue:
    """``GetSchemaVersion`` from memory."""

    def __init__(self) -> None:
        self.calls = 0

    def get_schema_version(self, SchemaVersionId: str) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        return {
            "DataFormat": "AVRO",
            "SchemaDefinition": orjson.dumps(SCHEMA).decode(),
            "SchemaArn": "arn:aws:glue:eu-west-1:123456789012:schema/orders/orders-value",
        }


def glue_frame(body: bytes, version: uuid.UUID, compressed: bool) -> bytes:
    header = b"\x03" + (b"\x05" if compressed else b"\x00") + version.bytes
    return header + (zlib.compress(body) if compressed else body)


def cpu_per_call(decode: Callable[[bytes, SourceRecord], Any], value: bytes, n: int) -> float:
    record = SourceRecord("orders", 0, 0, None, None, value, [])
    decode(value, record)  # the schema look-up, outside the measurement
    started = time.process_time()
    for _ in range(n):
        decode(value, record)
    return (time.process_time() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(SCHEMA), ORDER)
    body = buffer.getvalue()
    version = uuid.uuid4()
    glue = MemoryGlue()
    glue_decoder = GlueDecoder(ValueFormat.GLUE_AVRO, "value", MappingSettings(), client=glue)
    confluent_settings = MappingSettings(
        value_format=ValueFormat.AVRO, schema_registry_url="mock://benchmarks-decode"
    )
    confluent_value = AvroSerializer(
        registry_client(confluent_settings), orjson.dumps(SCHEMA).decode()
    )(ORDER, SerializationContext("orders", MessageField.VALUE))
    confluent_decoder = RegistryDecoder(ValueFormat.AVRO, "value", confluent_settings)
    cases: dict[str, tuple[Callable[[bytes, SourceRecord], Any], bytes]] = {
        "glue-avro": (glue_decoder, glue_frame(body, version, compressed=False)),
        "glue-avro, zlib": (glue_decoder, glue_frame(body, version, compressed=True)),
        "avro (Confluent)": (confluent_decoder, confluent_value),
    }
    print(f"{'decoder':<18} {'µs CPU/record':>14} {'records/s':>10}")
    for name, (decoder, value) in cases.items():
        median = statistics.median(
            cpu_per_call(decoder, value, args.records) for _ in range(args.repeat)
        )
        print(f"{name:<18} {median * 1e6:>14.2f} {1 / median:>10,.0f}")
    print(f"Glue look-ups: {glue.calls} (one per schema version)")

    from kafka_eventbridge.schemas import _protobuf_messages

    started = time.process_time()
    for _ in range(args.repeat * 5):
        _protobuf_messages(PROTO)
    compile_ms = (time.process_time() - started) / (args.repeat * 5) * 1000
    print(f"glue-protobuf: protoc compiles a .proto in {compile_ms:.1f} ms CPU (once per version)")


if __name__ == "__main__":
    main()
