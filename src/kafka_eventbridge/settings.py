"""Settings: environment variables (prefix ``BRIDGE_``) read into one validated model tree.

Each group is a pydantic-settings model with its own prefix. :func:`load_settings` reads
them all, collects every problem (not just the first), and raises :class:`ConfigError`
with one readable line per problem, naming the variable, what was wrong and what is
allowed. Secret values are never echoed back.

``BRIDGE_KAFKA_<PROPERTY>`` passes any librdkafka property through (upper case, dots as
underscores), to the consumer and to the dead-letter producer alike.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from kafka_eventbridge.errors import ConfigError

PREFIX = "BRIDGE_"
KAFKA_PREFIX = "BRIDGE_KAFKA_"

# librdkafka properties whose values must never be printed.
_SECRET_MARKERS = ("password", "secret", "ssl.key.pem", "sasl.oauthbearer.config", "token")


class Api(StrEnum):
    """Which EventBridge call publishes the entries."""

    PARTNER = "partner"  # PutPartnerEvents, up to 20 entries a call
    EVENTS = "events"  # PutEvents, up to 10 entries a call

    @property
    def max_entries(self) -> int:
        return 20 if self is Api.PARTNER else 10


class ValueFormat(StrEnum):
    """How a record value (or key) becomes the envelope's ``value`` (or ``key``)."""

    JSON = "json"
    STRING = "string"
    BYTES = "bytes"
    # Confluent Schema Registry wire format (magic byte, schema id, payload): see schemas.py.
    AVRO = "avro"
    PROTOBUF = "protobuf"
    JSON_SCHEMA = "json-schema"
    # AWS Glue Schema Registry wire format (version byte 3, compression byte, 16-byte schema
    # version id, payload): see schemas.py.
    GLUE_AVRO = "glue-avro"
    GLUE_PROTOBUF = "glue-protobuf"
    GLUE_JSON_SCHEMA = "glue-json-schema"

    @property
    def uses_registry(self) -> bool:
        """Decoded with a writer schema from a registry (Confluent-compatible or Glue)."""
        return self.uses_confluent_registry or self.uses_glue

    @property
    def uses_confluent_registry(self) -> bool:
        return self in (ValueFormat.AVRO, ValueFormat.PROTOBUF, ValueFormat.JSON_SCHEMA)

    @property
    def uses_glue(self) -> bool:
        return self in (
            ValueFormat.GLUE_AVRO,
            ValueFormat.GLUE_PROTOBUF,
            ValueFormat.GLUE_JSON_SCHEMA,
        )


class Tombstones(StrEnum):
    """What to do with a record whose value is null (a Kafka tombstone)."""

    SKIP = "skip"  # resolved without an entry, like a filtered record
    DEAD_LETTER = "dead-letter"
    MAP = "map"  # map it like any record, with ``value`` null in the envelope


class TraceHeaderSource(StrEnum):
    """``BRIDGE_EVENTBRIDGE_TRACE_HEADER``: where PutEvents' X-Ray ``TraceHeader`` comes from."""

    NONE = "none"  # only from a route's trace_header expression
    TRACEPARENT = "traceparent"  # from the record's W3C traceparent header (tracing.py)


class HttpClient(StrEnum):
    """How publish calls reach EventBridge."""

    CRT = "crt"  # awscrt: native HTTP, TLS and SigV4 off the GIL (crt.py)
    BOTO3 = "boto3"  # the boto3 client's own method, on a thread per request in flight


class Ordering(StrEnum):
    NONE = "none"  # batches of all partitions in flight together
    PARTITION = "partition"  # at most one batch in flight per partition


# Named like a secret, but not one: shown in `check` so a wrong URL can be seen.
_NOT_SECRET = frozenset({"sasl.oauthbearer.token.endpoint.url"})


def is_secret_property(name: str) -> bool:
    """True for librdkafka properties that hold credentials."""
    lowered = name.lower()
    return lowered not in _NOT_SECRET and any(marker in lowered for marker in _SECRET_MARKERS)


# Set while an explicit mapping is validated: then the process environment must not count.
_GIVEN_ONLY: ContextVar[bool] = ContextVar("_GIVEN_ONLY", default=False)


class _Group(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _GIVEN_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class KafkaSettings(_Group):
    """The three named Kafka settings; everything else under ``BRIDGE_KAFKA_`` passes through."""

    model_config = SettingsConfigDict(env_prefix=KAFKA_PREFIX, extra="ignore", frozen=True)

    bootstrap_servers: str = Field(min_length=1)
    topics: Annotated[list[str], NoDecode] = Field(min_length=1)
    group_id: str = Field(default="kafka-eventbridge", min_length=1)

    _split_topics = field_validator("topics", mode="before")(_split_csv)


NAMED_KAFKA_VARIABLES = frozenset(
    f"{KAFKA_PREFIX}{name.upper()}" for name in KafkaSettings.model_fields
)


class EventBridgeSettings(_Group):
    model_config = SettingsConfigDict(env_prefix=f"{PREFIX}EVENTBRIDGE_", frozen=True)

    api: Api = Api.PARTNER
    event_bus: str | None = Field(default=None, min_length=1, max_length=1600)
    region: str | None = None
    # A PutEvents global endpoint (Route 53 failover between two regions); needs SigV4a.
    endpoint_id: str | None = Field(default=None, min_length=1, max_length=50)
    partner_max_bytes: int = Field(default=262_144, ge=1024)
    events_max_bytes: int = Field(default=1_048_576, ge=1024)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=15.0, gt=0)
    trace_header: TraceHeaderSource = TraceHeaderSource.NONE
    http_client: HttpClient = HttpClient.CRT

    @property
    def max_bytes(self) -> int:
        """The size limit of the chosen API, for each entry and for a request's total."""
        return self.partner_max_bytes if self.api is Api.PARTNER else self.events_max_bytes


class MappingSettings(_Group):
    mapping_file: Path | None = None
    map_source: str | None = None
    map_detail_type: str | None = None
    map_detail: str | None = None
    map_resources: str | None = None
    map_time: str | None = None
    map_filter: str | None = None
    value_format: ValueFormat = ValueFormat.JSON
    tombstones: Tombstones = Tombstones.SKIP
    # ``string``: the key as UTF-8 text, undecodable bytes escaped (never dead-lettered).
    key_format: ValueFormat = ValueFormat.STRING
    # Schema Registry (avro, protobuf, json-schema formats). Checked in mapping_problems(),
    # not by validators: a validation error would echo the value, and these may hold secrets.
    schema_registry_url: str | None = None
    schema_registry_basic_auth_user_info: SecretStr | None = None
    schema_registry_ssl_ca_location: Path | None = None
    schema_registry_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    schema_registry_max_retries: int = Field(default=3, ge=0, le=10)
    # AWS Glue Schema Registry (glue-avro, glue-protobuf, glue-json-schema formats).
    glue_registry_name: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_$#.-]+$"
    )
    glue_region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
    glue_cache_size: int = Field(default=1000, ge=1, le=100_000)

    def shortcut(self) -> dict[str, str]:
        """The ``BRIDGE_MAP_*`` expressions that are set, keyed by route field."""
        fields = {
            "source": self.map_source,
            "detail_type": self.map_detail_type,
            "detail": self.map_detail,
            "resources": self.map_resources,
            "time": self.map_time,
            "filter": self.map_filter,
        }
        return {name: expr for name, expr in fields.items() if expr is not None}


class PipelineSettings(_Group):
    max_in_flight_requests: int = Field(default=64, ge=1, le=256)
    batch_max_entries: int | None = Field(default=None, ge=1, le=20)
    batch_linger_ms: int = Field(default=20, ge=0, le=60_000)
    consume_batch_size: int = Field(default=500, ge=1, le=100_000)
    max_buffered_records: int = Field(default=20_000, ge=1)
    max_buffered_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    ordering: Ordering = Ordering.NONE
    commit_interval_ms: int = Field(default=1000, ge=0, le=600_000)
    max_entries_per_second: float = Field(default=0.0, ge=0)
    group_max_entries_per_second: float = Field(default=0.0, ge=0)
    retry_backoff_initial_ms: int = Field(default=100, ge=1)
    retry_backoff_max_ms: int = Field(default=20_000, ge=1)
    retry_deadline_seconds: float = Field(default=0.0, ge=0)
    invalid_response_timeout_seconds: float = Field(default=60.0, gt=0)
    shutdown_timeout_seconds: float = Field(default=30.0, ge=0)
    revoke_timeout_seconds: float = Field(default=10.0, ge=0)
    dlq_topic: str | None = Field(default=None, min_length=1, max_length=249)
    dlq_max_ratio: float = Field(default=0.5, ge=0, le=1)
    dlq_ratio_window: int = Field(default=1000, ge=1)


class TelemetrySettings(_Group):
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_host: str = "0.0.0.0"  # noqa: S104 - a pod serves its metrics on every interface
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    health_stall_seconds: float = Field(default=60.0, gt=0)
    lag_interval_seconds: float = Field(default=10.0, ge=1, le=3600)

    _upper_level = field_validator("log_level", mode="before")(
        lambda value: value.upper() if isinstance(value, str) else value
    )


class MskSettings(_Group):
    """Amazon MSK IAM authentication (SASL OAUTHBEARER with AWS-signed tokens)."""

    model_config = SettingsConfigDict(env_prefix=f"{PREFIX}MSK_", frozen=True)

    iam: bool = False
    iam_region: str | None = None  # the cluster's region when it differs from the bus's


class OffloadSettings(_Group):
    """Large payloads to S3 (claim check): off unless a bucket is named."""

    model_config = SettingsConfigDict(env_prefix=f"{PREFIX}OFFLOAD_S3_", frozen=True)

    bucket: str | None = Field(default=None, min_length=3, max_length=63)
    prefix: str = "kafka-eventbridge/"
    field: str | None = None  # a dotted path into Detail; unset: the whole Detail


class AwsSettings(_Group):
    """The role the bridge works as, on top of the default credential chain (see aws.py)."""

    model_config = SettingsConfigDict(env_prefix=f"{PREFIX}AWS_", frozen=True)

    role_arn: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$",
    )
    # Sent as the STS ExternalId. Not a secret by AWS's definition, masked all the same;
    # checked in aws_problems() so that a refused value is never echoed.
    role_external_id: SecretStr | None = None
    role_session_name: str = Field(
        default="kafka-eventbridge", min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_+=,.@-]+$"
    )
    role_duration_seconds: int = Field(default=3600, ge=900, le=43_200)


@dataclass(frozen=True)
class KafkaProperties:
    """librdkafka properties from ``BRIDGE_KAFKA_<PROPERTY>``; repr never shows secrets."""

    values: Mapping[str, str]

    def redacted(self) -> dict[str, str]:
        return {k: ("***" if is_secret_property(k) else v) for k, v in self.values.items()}

    def __repr__(self) -> str:
        return f"KafkaProperties({self.redacted()})"


@dataclass(frozen=True)
class Settings:
    """Every setting of the bridge, validated."""

    kafka: KafkaSettings
    kafka_properties: KafkaProperties
    eventbridge: EventBridgeSettings
    mapping: MappingSettings
    pipeline: PipelineSettings
    telemetry: TelemetrySettings
    msk: MskSettings
    offload: OffloadSettings
    # Defaults (no role) for a Settings built by hand; load_settings reads BRIDGE_AWS_*.
    aws: AwsSettings = dataclasses.field(default_factory=AwsSettings.model_construct)

    @property
    def dlq_topic(self) -> str:
        return self.pipeline.dlq_topic or f"{self.kafka.group_id}.dlq"

    @property
    def batch_max_entries(self) -> int:
        return self.pipeline.batch_max_entries or self.eventbridge.api.max_entries

    def redacted(self) -> dict[str, Any]:
        """A printable view of every setting, secrets masked."""
        view: dict[str, Any] = {}
        groups = (
            self.kafka,
            self.eventbridge,
            self.mapping,
            self.pipeline,
            self.telemetry,
            self.msk,
            self.offload,
            self.aws,
        )
        for group in groups:
            prefix = group.model_config.get("env_prefix", PREFIX)
            for name, value in group.model_dump(mode="json").items():
                view[f"{prefix}{name.upper()}"] = value
        for prop, value in self.kafka_properties.redacted().items():
            view[property_variable(prop)] = value
        view["(dead-letter topic)"] = self.dlq_topic
        return view


def property_variable(prop: str) -> str:
    """The environment variable that sets a librdkafka property."""
    return KAFKA_PREFIX + prop.upper().replace(".", "_")


def kafka_passthrough(environ: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties given as ``BRIDGE_KAFKA_<PROPERTY>`` (the named ones excluded)."""
    return {
        name[len(KAFKA_PREFIX) :].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith(KAFKA_PREFIX) and name not in NAMED_KAFKA_VARIABLES
    }


_GROUPS: dict[str, type[_Group]] = {
    "kafka": KafkaSettings,
    "eventbridge": EventBridgeSettings,
    "mapping": MappingSettings,
    "pipeline": PipelineSettings,
    "telemetry": TelemetrySettings,
    "msk": MskSettings,
    "offload": OffloadSettings,
    "aws": AwsSettings,
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise :class:`ConfigError` listing all problems."""
    env = os.environ if environ is None else environ
    groups = _read_groups(_GROUPS, env)
    settings = Settings(kafka_properties=KafkaProperties(kafka_passthrough(env)), **groups)
    problems = _cross_checks(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def load_mapping_settings() -> tuple[MappingSettings, EventBridgeSettings]:
    """Just what mapping needs (for ``kafka-eventbridge map``: no Kafka settings required)."""
    groups = _read_groups({"mapping": MappingSettings, "eventbridge": EventBridgeSettings})
    mapping: MappingSettings = groups["mapping"]
    eventbridge: EventBridgeSettings = groups["eventbridge"]
    problems = mapping_problems(mapping)
    if problems:
        raise ConfigError(problems)
    return mapping, eventbridge


def _read_groups(
    models: Mapping[str, type[_Group]], env: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """Every group validated, or one ConfigError listing the problems of all of them."""
    problems: list[str] = []
    groups: dict[str, Any] = {}
    for key, model in models.items():
        try:
            groups[key] = _read_group(model, env)
        except ValidationError as exc:
            problems.extend(_describe(model, exc))
    if problems:
        raise ConfigError(problems)
    return groups


def _registry_url_problems(urls: list[str]) -> list[str]:
    for url in urls:
        try:
            parsed = urlsplit(url.strip())
            host = parsed.hostname
        except ValueError:
            host = None
        if host is None or parsed.scheme not in ("http", "https", "mock"):
            return [
                "BRIDGE_SCHEMA_REGISTRY_URL: must be http(s)://host[:port][/path], several "
                "separated by commas"
            ]
        if parsed.username is not None or parsed.password is not None:
            return [
                "BRIDGE_SCHEMA_REGISTRY_URL: must not carry credentials (value not shown); set "
                "BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=user:password instead"
            ]
    return []


def mapping_problems(mapping: MappingSettings) -> list[str]:
    """The Schema Registry settings that cannot work; secret values are never shown."""
    problems = []
    url = mapping.schema_registry_url
    for name, fmt in (("VALUE", mapping.value_format), ("KEY", mapping.key_format)):
        if fmt.uses_confluent_registry and not url:
            problems.append(
                f"BRIDGE_SCHEMA_REGISTRY_URL: required with BRIDGE_{name}_FORMAT={fmt.value} "
                "(records carry a schema id that is looked up there)"
            )
    problems.extend(_registry_url_problems(url.split(",") if url else []))
    user_info = mapping.schema_registry_basic_auth_user_info
    if user_info is not None and ":" not in user_info.get_secret_value():
        problems.append(
            "BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: must be user:password (value not shown)"
        )
    ca = mapping.schema_registry_ssl_ca_location
    if ca is not None and not ca.exists():
        problems.append(f"BRIDGE_SCHEMA_REGISTRY_SSL_CA_LOCATION: no such file: {ca}")
    return problems


def _read_group(model: type[_Group], env: Mapping[str, str]) -> _Group:
    if env is os.environ:
        return model()
    # Validate an explicit mapping (tests, `check` on a given environment) the same way:
    # pydantic-settings reads os.environ, so give it just the variables of this group.
    prefix = str(model.model_config.get("env_prefix", PREFIX))
    values = {
        name[len(prefix) :].lower(): value
        for name, value in env.items()
        if name.startswith(prefix) and name[len(prefix) :].lower() in model.model_fields
    }
    # Validation runs BaseSettings.__init__, which would also read os.environ.
    token = _GIVEN_ONLY.set(True)
    try:
        return model.model_validate(values)
    finally:
        _GIVEN_ONLY.reset(token)


def _describe(model: type[_Group], exc: ValidationError) -> list[str]:
    prefix = str(model.model_config.get("env_prefix", PREFIX))
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = f"{prefix}{field.upper()}"
        if error["type"] == "missing":
            lines.append(f"{variable}: required but not set")
            continue
        shown = error.get("input")
        got = f" (got {shown!r})" if isinstance(shown, str | int | float) else ""
        lines.append(f"{variable}: {error['msg']}{got}")
    return lines


def _cross_checks(settings: Settings) -> list[str]:
    problems = []
    api = settings.eventbridge.api
    if api is Api.PARTNER and settings.eventbridge.event_bus:
        problems.append(
            "BRIDGE_EVENTBRIDGE_EVENT_BUS: only for BRIDGE_EVENTBRIDGE_API=events; "
            "PutPartnerEvents writes to the partner event source named by the mapped Source"
        )
    problems.extend(_endpoint_problems(settings.eventbridge))
    if api is Api.PARTNER and settings.eventbridge.trace_header is not TraceHeaderSource.NONE:
        problems.append(
            "BRIDGE_EVENTBRIDGE_TRACE_HEADER: only for BRIDGE_EVENTBRIDGE_API=events; "
            "PutPartnerEvents entries have no TraceHeader"
        )
    if settings.batch_max_entries > api.max_entries:
        problems.append(
            f"BRIDGE_BATCH_MAX_ENTRIES: {settings.batch_max_entries} is above the "
            f"{api.max_entries} entries a {api.value} call takes"
        )
    pipeline = settings.pipeline
    if pipeline.retry_backoff_initial_ms > pipeline.retry_backoff_max_ms:
        problems.append(
            "BRIDGE_RETRY_BACKOFF_INITIAL_MS: must not exceed BRIDGE_RETRY_BACKOFF_MAX_MS"
        )
    mapping = settings.mapping
    if mapping.mapping_file is not None and mapping.shortcut():
        problems.append(
            "BRIDGE_MAPPING_FILE: set together with BRIDGE_MAP_* expressions; use one or the other"
        )
    if mapping.mapping_file is not None and not mapping.mapping_file.is_file():
        problems.append(f"BRIDGE_MAPPING_FILE: no such file: {mapping.mapping_file}")
    problems.extend(mapping_problems(mapping))
    problems.extend(aws_problems(settings.aws))
    for prop, value in settings.kafka_properties.values.items():
        if not value:
            problems.append(f"{property_variable(prop)}: empty value for librdkafka '{prop}'")
    return problems


_EXTERNAL_ID = re.compile(r"[A-Za-z0-9_+=,.@:/-]{2,1224}")


def aws_problems(aws: AwsSettings) -> list[str]:
    """The role settings that cannot work; the external id is never shown."""
    problems = []
    external_id = aws.role_external_id
    if external_id is not None and not _EXTERNAL_ID.fullmatch(external_id.get_secret_value()):
        problems.append(
            "BRIDGE_AWS_ROLE_EXTERNAL_ID: must be 2-1224 characters of letters, digits and "
            "+=,.@:/-_ (value not shown)"
        )
    if aws.role_arn is None and external_id is not None:
        problems.append("BRIDGE_AWS_ROLE_EXTERNAL_ID: only used with BRIDGE_AWS_ROLE_ARN")
    return problems


def _endpoint_problems(eventbridge: EventBridgeSettings) -> list[str]:
    if eventbridge.endpoint_id is None:
        return []
    if eventbridge.api is Api.PARTNER:
        return [
            "BRIDGE_EVENTBRIDGE_ENDPOINT_ID: global endpoints are for PutEvents "
            "(BRIDGE_EVENTBRIDGE_API=events); PutPartnerEvents has none"
        ]
    from botocore.compat import HAS_CRT

    if not HAS_CRT:
        return [
            "BRIDGE_EVENTBRIDGE_ENDPOINT_ID: global endpoints are signed with SigV4a, which "
            "needs the AWS CRT (pip install 'boto3[crt]')"
        ]
    return []


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``BRIDGE_*`` variables that no setting reads (most likely typos)."""
    known = {
        f"{model.model_config.get('env_prefix', PREFIX)}{field.upper()}"
        for model in _GROUPS.values()
        for field in model.model_fields
    }
    return sorted(
        name
        for name in environ
        if name.startswith(PREFIX)
        and not name.startswith(KAFKA_PREFIX)
        and not name.startswith("BRIDGE_TEST_")
        and name not in known
    )
