"""Schema Registry formats: Avro, Protobuf and JSON Schema keys and values.

With ``BRIDGE_VALUE_FORMAT`` (or ``BRIDGE_KEY_FORMAT``) set to ``avro``, ``protobuf`` or
``json-schema``, records are expected in the Confluent wire format (magic byte, schema id,
payload; or the schema id in a ``__value_schema_id`` / ``__key_schema_id`` header), and
confluent-kafka's Schema Registry deserializers decode them with the writer's schema, fetched
by id from ``BRIDGE_SCHEMA_REGISTRY_URL`` and cached for the life of the process. The result
becomes plain JSON-compatible data for the envelope (see :func:`plain`), so mapping
expressions and ``detail`` see objects, strings and numbers whatever the format.

What goes wrong, and whose fault it is:

* **The record's** (dead letter, stage ``decode``): no magic byte (``InvalidMagicByte``); a
  schema id the registry does not know (``UnknownSchema``); a payload that does not match its
  schema (``SchemaMismatch``).
* **Not the record's** (:class:`FatalError`, the process exits 1 and Kubernetes restarts it
  with backoff): the registry cannot be reached or keeps failing after the client's bounded
  retries (``SchemaRegistryUnavailable``); it refuses the credentials
  (``SchemaRegistryAuthFailed``); any other answer that is not "no such schema"
  (``SchemaRegistryError``, e.g. a URL that is not a registry). Dead-lettering the stream
  while the registry is down would be the wrong fix for a problem that waiting fixes, and
  blocking the loop indefinitely would stall group membership and ``/healthz``; a restart with
  backoff keeps the at-least-once guarantee (nothing unresolved is committed) and shows up in
  ``/readyz`` and the pod's restarts. Schemas are cached, so an outage only matters for ids
  the process has not met yet.

Protobuf has no generated classes here: confluent-kafka's ``ProtobufDeserializer`` needs one
(it reads ``message_type.DESCRIPTOR`` and parses every payload into that class), so
:class:`_DynamicProtobuf` builds the class from the registered schema (a serialized
``FileDescriptorProto``) with protobuf's ``DescriptorPool`` and ``GetMessageClass``, once per
schema id and message index, and hands it to a ``ProtobufDeserializer``.

The confluent-kafka Schema Registry modules take about a second to import; they are imported
only when a registry format is configured.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from kafka_eventbridge.errors import ConfigError, FatalError, RecordError, Stage
from kafka_eventbridge.records import SourceRecord, decode_value
from kafka_eventbridge.settings import MappingSettings, ValueFormat

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

#: Decodes a key or value (the bytes) of a record into what the envelope holds.
RecordDecoder = Callable[[bytes, SourceRecord], Any]

_MAGIC_BYTES = (b"\x00", b"\x01")  # schema id (v0), schema guid (v1)
_ID_HEADERS = {"key": "__key_schema_id", "value": "__value_schema_id"}
# Statuses the client retried before giving up: the registry is down or overloaded.
_UNAVAILABLE = frozenset({408, 429, 500, 502, 503, 504})
_MAX_REASON = 300


class Decoders(TypedDict):
    """Keyword arguments of :class:`~kafka_eventbridge.mapping.Mapper`."""

    value_decoder: RecordDecoder | None
    key_decoder: RecordDecoder | None


def build_decoders(
    settings: MappingSettings, on_registry_error: Callable[[], None] | None = None
) -> Decoders:
    """The decoders the mapping settings ask for; None keeps the built-in decoding.
    ``on_registry_error`` is called for each registry failure that is not the record's."""
    value = settings.value_format
    key = settings.key_format

    def registry(fmt: ValueFormat, field: str) -> RegistryDecoder:
        return RegistryDecoder(fmt, field, settings, on_registry_error)

    return Decoders(
        value_decoder=registry(value, "value") if value.uses_registry else None,
        key_decoder=registry(key, "key") if key.uses_registry else _key(key),
    )


def _key(key_format: ValueFormat) -> RecordDecoder | None:
    """Keys in the formats without a registry; ``string`` (None) is the envelope's own."""
    if key_format is ValueFormat.STRING:
        return None
    return lambda data, _record: _decode_key(data, key_format)


def _decode_key(data: bytes, key_format: ValueFormat) -> Any:
    try:
        return decode_value(data, key_format)
    except RecordError as exc:
        raise RecordError(exc.stage, exc.code, exc.message.replace("value", "key", 1)) from None


# -- the registry client --------------------------------------------------------------------

_CLIENTS: dict[tuple[tuple[str, Any], ...], SchemaRegistryClient] = {}


def registry_config(settings: MappingSettings) -> dict[str, Any]:
    """confluent-kafka's ``SchemaRegistryClient`` configuration (holds the secret)."""
    if not settings.schema_registry_url:
        raise ConfigError(["BRIDGE_SCHEMA_REGISTRY_URL: required by a Schema Registry format"])
    conf: dict[str, Any] = {
        "url": settings.schema_registry_url,
        "timeout": settings.schema_registry_timeout_seconds,
        "max.retries": settings.schema_registry_max_retries,
    }
    if settings.schema_registry_basic_auth_user_info is not None:
        conf["basic.auth.user.info"] = (
            settings.schema_registry_basic_auth_user_info.get_secret_value()
        )
    if settings.schema_registry_ssl_ca_location is not None:
        conf["ssl.ca.location"] = str(settings.schema_registry_ssl_ca_location)
    return conf


def registry_client(settings: MappingSettings) -> SchemaRegistryClient:
    """The process's client for these settings: keys and values share one schema cache.

    Also how a test reaches the in-process ``mock://`` registry the bridge uses, to register
    schemas in it.
    """
    registry = _import("confluent_kafka.schema_registry")
    conf = registry_config(settings)
    key = tuple(sorted(conf.items()))
    client = _CLIENTS.get(key)
    if client is None:
        try:
            client = _CLIENTS[key] = registry.SchemaRegistryClient.new_client(conf)
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError([f"BRIDGE_SCHEMA_REGISTRY_*: {exc}"]) from None
    return client


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            [
                f"BRIDGE_VALUE_FORMAT / BRIDGE_KEY_FORMAT: Schema Registry support is not "
                f"installed ({exc.name} missing): install "
                "'confluent-kafka[schemaregistry,avro,protobuf,json]'"
            ]
        ) from None


# -- decoding -------------------------------------------------------------------------------


class RegistryDecoder:
    """Decodes keys or values in one Schema Registry format into plain JSON-compatible data."""

    def __init__(
        self,
        fmt: ValueFormat,
        field: str,
        settings: MappingSettings,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._on_error = on_error
        serialization = _import("confluent_kafka.serialization")
        self.format = fmt
        self.field = field
        self._header = _ID_HEADERS[field]
        self._message_field = getattr(serialization.MessageField, field.upper())
        self._context = serialization.SerializationContext
        client = registry_client(settings)
        self._deserialize, self._to_plain = _deserializer(fmt, client)
        self._registry_error = _import("confluent_kafka.schema_registry.error").SchemaRegistryError
        self._transport_error = _import(
            "confluent_kafka.schema_registry.common._httpx_compat"
        ).httpx.TransportError
        self._retries = settings.schema_registry_max_retries

    def __call__(self, data: bytes, record: SourceRecord) -> Any:
        if data[:1] not in _MAGIC_BYTES and not self._id_in_headers(record):
            raise RecordError(
                Stage.DECODE,
                "InvalidMagicByte",
                f"{self.field} does not start with the Schema Registry magic byte (0 or 1, got "
                f"{data[:1].hex() or 'nothing'}) and no {self._header} header names its "
                f"schema: not written by a {self.format.value} Schema Registry serializer",
            )
        context = self._context(record.topic, self._message_field, record.headers)
        try:
            decoded = self._deserialize(data, context)
        except self._registry_error as exc:
            failure = self._lookup_failed(exc)
            if isinstance(failure, FatalError):
                self._count_error()
            raise failure from None
        except self._transport_error as exc:
            self._count_error()
            raise FatalError(
                "SchemaRegistryUnavailable",
                f"cannot reach the Schema Registry after {self._retries} retries "
                f"({type(exc).__name__}: {_short(exc)}); check BRIDGE_SCHEMA_REGISTRY_URL and "
                "the network",
            ) from None
        except Exception as exc:
            # Whatever the deserializer raises past the lookup is about these bytes: a
            # truncated frame, bad Avro or Protobuf, JSON that fails its schema.
            raise RecordError(
                Stage.DECODE,
                "SchemaMismatch",
                f"{self.field} does not decode with its {self.format.value} schema: {_reason(exc)}",
            ) from None
        return self._to_plain(decoded)

    def _count_error(self) -> None:
        if self._on_error is not None:
            self._on_error()

    def _id_in_headers(self, record: SourceRecord) -> bool:
        return any(name == self._header for name, _ in record.headers)

    def _lookup_failed(self, exc: Any) -> Exception:
        status, code = exc.http_status_code, exc.error_code
        if status == 404 and 40400 <= code <= 40499:
            # The registry answered, and has no such schema: this record's id is wrong.
            return RecordError(
                Stage.DECODE, "UnknownSchema", f"{self.field}: {_short(exc.error_message)}"
            )
        if status in (401, 403):
            return FatalError(
                "SchemaRegistryAuthFailed",
                f"the Schema Registry refused the credentials (HTTP {status}): check "
                "BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO and the account's permissions",
            )
        if status in _UNAVAILABLE:
            return FatalError(
                "SchemaRegistryUnavailable",
                f"the Schema Registry kept failing (HTTP {status}) after {self._retries} retries",
            )
        return FatalError(
            "SchemaRegistryError",
            f"unexpected Schema Registry answer (HTTP {status}, code {code}: "
            f"{_short(exc.error_message)}); is BRIDGE_SCHEMA_REGISTRY_URL the registry's base "
            "URL?",
        )


Deserialize = Callable[[bytes, Any], Any]


def _deserializer(fmt: ValueFormat, client: SchemaRegistryClient) -> tuple[Deserialize, Any]:
    """The confluent-kafka deserializer for a format, and how its result becomes plain data."""
    # Subjects only matter for data-contract rules; naming them after the topic avoids the
    # default strategy's association lookup, which not every registry serves.
    conf = {"subject.name.strategy.type": "TOPIC"}
    if fmt is ValueFormat.AVRO:
        avro = _import("confluent_kafka.schema_registry.avro")
        return avro.AvroDeserializer(client, conf=conf), plain
    if fmt is ValueFormat.JSON_SCHEMA:
        json_schema = _import("confluent_kafka.schema_registry.json_schema")
        deserializer = json_schema.JSONDeserializer(
            None, schema_registry_client=client, conf=conf, json_decode=orjson.loads
        )
        return deserializer, _same
    return _DynamicProtobuf(client, conf), _protobuf_to_dict


def _same(value: Any) -> Any:
    return value


class _DynamicProtobuf:
    """A ``ProtobufDeserializer`` per writer schema, with a message class built from it."""

    def __init__(self, client: SchemaRegistryClient, conf: dict[str, Any]) -> None:
        self._client = client
        self._conf = conf
        self._protobuf = _import("confluent_kafka.schema_registry.protobuf")
        self._schema_id = _import("confluent_kafka.schema_registry.serde").SchemaId
        self._read_id = _import("confluent_kafka.schema_registry").dual_schema_id_deserializer
        self._deserializers: dict[tuple[Any, tuple[int, ...]], Deserialize] = {}

    def __call__(self, data: bytes, context: Any) -> Any:
        schema_id = self._schema_id("PROTOBUF")
        self._read_id(data, context, schema_id)  # the same framing the deserializer reads
        writer = schema_id.id if schema_id.id is not None else str(schema_id.guid)
        key = (writer, tuple(schema_id.message_indexes or [0]))
        deserializer = self._deserializers.get(key)
        if deserializer is None:
            message_class = self._message_class(schema_id)
            deserializer = self._protobuf.ProtobufDeserializer(
                message_class, self._conf, self._client
            )
            self._deserializers[key] = deserializer
        return deserializer(data, context)

    def _message_class(self, schema_id: Any) -> Any:
        from google.protobuf.descriptor_pool import DescriptorPool
        from google.protobuf.message_factory import GetMessageClass

        if schema_id.id is not None:
            schema = self._client.get_schema(schema_id.id, None, "serialized")
        else:
            schema = self._client.get_schema_by_guid(str(schema_id.guid), "serialized")
        protobuf = self._protobuf
        pool = DescriptorPool()
        protobuf._init_pool(pool)  # well-known and Confluent types, as the deserializer does
        protobuf._resolve_named_schema(schema, self._client, pool)  # imported .proto files
        file_proto = protobuf._str_to_proto("default", schema.schema_str)
        pool.Add(file_proto)
        # The message indexes walk from the file's top-level messages into nested ones.
        indexes = schema_id.message_indexes or [0]
        message = file_proto.message_type[indexes[0]]
        name = message.name
        for index in indexes[1:]:
            message = message.nested_type[index]
            name = f"{name}.{message.name}"
        full_name = f"{file_proto.package}.{name}" if file_proto.package else name
        return GetMessageClass(pool.FindMessageTypeByName(full_name))


def _protobuf_to_dict(message: Any) -> Any:
    from google.protobuf import json_format

    # ProtoJSON: field names as written in the .proto, int64 as strings, bytes as base64,
    # enums by name, Timestamp as RFC 3339; fields left at their default are included, so
    # expressions see "" / 0 / false rather than null.
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# -- plain data -----------------------------------------------------------------------------


def _datetime(value: dt.datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _base64(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(value).decode("ascii")


_PASS = frozenset({str, int, float, bool, type(None)})
_CONVERT: dict[type, Callable[[Any], Any]] = {
    bytes: _base64,
    bytearray: _base64,
    memoryview: _base64,
    decimal.Decimal: lambda value: format(value, "f"),  # exact, never 1E+2
    dt.datetime: _datetime,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    uuid.UUID: str,
}


def plain(value: Any) -> Any:
    """JSON-compatible data from what the Avro deserializer returns.

    Records and maps become dicts, arrays lists, ``bytes`` and ``fixed`` base64 text,
    ``decimal`` an exact decimal string ("12.30"), ``timestamp-*`` RFC 3339 text (``Z`` for
    UTC), ``local-timestamp-*`` the same without an offset, ``date`` "2026-01-31",
    ``time-*`` "12:00:00.005000", ``uuid`` its text. Numbers, strings, booleans and null stay.
    """
    kind = type(value)
    if kind in _PASS:
        return value
    if kind is dict:
        return {str(k): plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    convert = _CONVERT.get(kind)
    if convert is None:
        convert = next((c for t, c in _CONVERT.items() if isinstance(value, t)), str)
    return convert(value)


def _short(value: object) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _reason(exc: BaseException) -> str:
    """Why a payload failed, without quoting it: logs and headers never carry payloads."""
    cause = exc.__cause__ or exc.__context__
    path = getattr(cause, "absolute_path", None)
    validator = getattr(cause, "validator", None)
    if path is not None and validator is not None:
        # jsonschema's own message quotes the offending value; name the place instead.
        where = "/" + "/".join(str(p) for p in path)
        return f"{where} fails the schema's {validator!r} rule"
    return f"{type(exc).__name__}: {_short(exc)}"
