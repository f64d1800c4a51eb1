"""Mapping: from a Kafka record to an EventBridge entry, through JMESPath routes.

A mapping is an ordered list of routes. The first route whose ``topics`` (names, or
regexes starting with ``^``) and optional ``when`` match a record maps it. Every entry
field is a JMESPath expression over the record envelope (see :mod:`records`), compiled
once at start so a typo is reported before anything is consumed.

Everything here is pure: no I/O, no clock. Failures for one record raise
:class:`RecordError` with stage ``decode``, ``map`` or ``validate``; problems with the
mapping itself raise :class:`ConfigError`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jmespath
import orjson
import yaml
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kafka_eventbridge.errors import ConfigError, RecordError, Stage
from kafka_eventbridge.offload import OffloadPolicy, Upload
from kafka_eventbridge.records import SourceRecord, decode_value, envelope
from kafka_eventbridge.settings import Api, MappingSettings, Tombstones, ValueFormat

PARTNER_SOURCE = re.compile(r"aws\.partner(/[.\-_A-Za-z0-9]+){2,}")
MAX_SOURCE = 256
MAX_DETAIL_TYPE = 128
MAX_RESOURCE = 2048
TIME_OVERHEAD = 14  # bytes the service counts for an entry that sets Time
DEFAULT_EVENTS_SOURCE = "'kafka-eventbridge'"
SHORTCUT_LABEL = "BRIDGE_MAP_*"
DEFAULTS = {"detail_type": "topic", "detail": "value", "time": "timestamp"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The times a datetime can hold (years 1 to 9999), in epoch milliseconds.
MIN_TIME_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
MAX_TIME_MS = (datetime.max.replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
_EVENTS_ONLY = ("event_bus", "trace_header")


class RouteSpec(BaseModel):
    """One route as written in the mapping file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: list[str] = Field(min_length=1)
    when: str | None = None
    filter: str | None = None
    source: str | None = None
    detail_type: str | None = None
    detail: str | None = None
    resources: str | None = None
    time: str | None = None
    event_bus: str | None = None
    trace_header: str | None = None


class MappingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routes: list[RouteSpec] = Field(min_length=1)


@dataclass(slots=True)
class Entry:
    """An EventBridge entry ready to send, with its size as the service counts it."""

    source: str
    detail_type: str
    detail: str
    resources: list[str] | None
    # Epoch milliseconds: the record timestamp's own form, kept as a number to the request
    # body (a datetime made and read back per record showed in profiles).
    time_ms: int | None
    event_bus: str | None
    trace_header: str | None
    size: int
    # The S3 object to store before sending, when the Detail was offloaded (claim check).
    upload: Upload | None = None
    # The source or the bus comes from the record, not from a constant of the route: a
    # refusal of that target is the record's, not the configuration's.
    record_target: bool = False

    @property
    def time(self) -> datetime | None:
        """Time as a UTC datetime, millisecond precision."""
        ms = self.time_ms
        return None if ms is None else EPOCH + timedelta(milliseconds=ms)

    def request(self) -> dict[str, Any]:
        """The entry in the shape of boto3's ``Entries`` parameter."""
        return self._fields(self.time)

    def wire(self) -> dict[str, Any]:
        """The entry as it goes into the JSON request body: ``request()`` with Time as botocore
        serializes it (epoch seconds, an integer unless it has milliseconds)."""
        ms = self.time_ms
        if ms is None:
            return self._fields(None)
        return self._fields(ms / 1000 if ms % 1000 else ms // 1000)

    def _fields(self, time: Any) -> dict[str, Any]:
        item: dict[str, Any] = {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": self.detail,
        }
        if self.resources:
            item["Resources"] = self.resources
        if time is not None:
            item["Time"] = time
        if self.event_bus is not None:
            item["EventBusName"] = self.event_bus
        if self.trace_header is not None:
            item["TraceHeader"] = self.trace_header
        return item


def entry_size(
    source: str, detail_type: str, detail: str, resources: Iterable[str], has_time: bool
) -> int:
    """The entry size by the service's formula: Time's 14 bytes plus the UTF-8 strings."""
    size = TIME_OVERHEAD if has_time else 0
    size += _utf8_len(source) + _utf8_len(detail_type) + _utf8_len(detail)
    for resource in resources:  # a loop, not sum(generator): most entries have none
        size += _utf8_len(resource)
    return size


def _utf8_len(text: str) -> int:
    # isascii() is a flag lookup; encoding copies the string (a whole Detail) to count it.
    return len(text) if text.isascii() else len(text.encode())


class TopicMatcher:
    """Topic names and ``^regex`` patterns."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.names = {p for p in patterns if not p.startswith("^")}
        self.regexes = [re.compile(p) for p in patterns if p.startswith("^")]

    def matches(self, topic: str) -> bool:
        # Match the way librdkafka subscribes (POSIX regexec, unanchored at the end): a
        # route "^orders" covers every topic the subscription "^orders" brings in.
        return topic in self.names or any(r.search(topic) for r in self.regexes)


@dataclass(frozen=True)
class Expression:
    """A compiled JMESPath expression that remembers its text for error messages."""

    field: str
    text: str
    compiled: ParsedResult
    # Plain Python for the simplest expressions (the common case); None: jmespath's interpreter.
    fast: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.fast is not None:
            # Called in place of the method: one Python call less per field and record.
            object.__setattr__(self, "search", self.fast)

    def search(self, data: dict[str, Any]) -> Any:
        try:
            return self.compiled.search(data)
        except JMESPathError as exc:
            raise RecordError(Stage.MAP, "ExpressionFailed", f"{self.field}: {exc}") from None

    @property
    def literal(self) -> tuple[bool, Any]:
        """(True, value) when the expression is a constant."""
        parsed = self.compiled.parsed
        return (parsed["type"] == "literal", parsed.get("value"))


@dataclass
class Route:
    index: int
    label: str
    topics: TopicMatcher
    fields: dict[str, Expression]
    when: Expression | None = None
    filter: Expression | None = None
    detail_is_value: bool = field(default=False)
    # The fields Mapper._build evaluates, looked up once here rather than per record.
    # Source, detail type and time always have one (DEFAULTS); the others may not.
    plan: tuple[
        Expression, Expression, Expression | None, Expression, Expression | None, Expression | None
    ] = field(init=False, repr=False, compare=False)
    # A constant source or detail type, checked once when the route is compiled
    # (_check_constants) instead of for every record; None when the record gives it.
    constant_source: str | None = field(init=False, repr=False, compare=False)
    constant_detail_type: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.constant_source = _constant_text(self.fields["source"])
        self.constant_detail_type = _constant_text(self.fields["detail_type"])
        get = self.fields.get
        self.plan = (
            self.fields["source"],
            self.fields["detail_type"],
            get("resources"),
            self.fields["time"],
            get("event_bus"),
            get("trace_header"),
        )

    def applies(self, env: dict[str, Any]) -> bool:
        return self.when is None or not _is_false(self.when.search(env))

    @functools.cached_property
    def record_target(self) -> bool:
        """Does the source or the bus of this route's entries come from the record?"""
        return any(
            name in self.fields and not self.fields[name].literal[0]
            for name in ("source", "event_bus")
        )


def _constant_text(expression: Expression) -> str | None:
    is_literal, value = expression.literal
    return value if is_literal and isinstance(value, str) and value else None


def _is_false(value: Any) -> bool:
    """JMESPath's notion of false: false, null and empty strings, lists and objects (by
    equality, as jmespath tests it, so that 0 does not count as false)."""
    # Not ``value in ("", [], {})``: that builds a list and a dict at every call.
    return value is None or value is False or (not value and isinstance(value, _EMPTY_FALSE))


_EMPTY_FALSE = (str, list, dict)


def _path(names: Sequence[str]) -> Callable[[Any], Any]:
    """A field (``a``) or a path of them (``a.b.c``): one call, not one per field and dot."""

    def get(value: Any) -> Any:
        for name in names:
            try:
                value = value.get(name)
            except AttributeError:
                return None
        return value

    return get


def _field_names(node: Any) -> list[str] | None:
    """The names of a subexpression made only of fields (``a.b.c``), else None."""
    if node["type"] == "field":
        return [node["value"]]
    if node["type"] != "subexpression":
        return None
    names = []
    for child in node["children"]:
        inner = _field_names(child)
        if inner is None:
            return None
        names += inner
    return names


def _constant(constant: Any) -> Callable[[Any], Any]:
    return lambda _value: constant


_LEAVES: dict[str, Callable[[Any], Callable[[Any], Any]]] = {
    "literal": lambda node: _constant(node["value"]),
    "current": lambda _node: lambda value: value,
}


def _evaluator(node: Any) -> Callable[[Any], Any] | None:
    """A Python function computing what jmespath's TreeInterpreter computes for ``node``.

    Covers fields (``value.type``), literals, ``@``, ``||`` and ``&&``, which is what most
    mappings are made of; jmespath builds a fresh interpreter and walks the tree on every
    search, a third of the bridge's CPU in profiles. Anything else returns None and keeps
    jmespath's interpreter, so semantics never depend on this shortcut being complete.
    """
    leaf = _LEAVES.get(node["type"])
    if leaf is not None:
        return leaf(node)
    names = _field_names(node)
    if names is not None:
        return _path(names)
    steps = [_evaluator(child) for child in node.get("children", ())]
    if not steps or None in steps:
        return None
    return _combine(node["type"], [step for step in steps if step is not None])


def _combine(kind: str, steps: list[Callable[[Any], Any]]) -> Callable[[Any], Any] | None:
    if kind == "subexpression":
        return functools.reduce(lambda inner, outer: lambda v: outer(inner(v)), steps)
    if len(steps) != 2:
        return None
    left, right = steps
    if kind == "or_expression":
        return lambda value: right(value) if _is_false(found := left(value)) else found
    if kind == "and_expression":
        return lambda value: found if _is_false(found := left(value)) else right(value)
    return None


def _compile(route_label: str, name: str, text: str) -> Expression:
    try:
        compiled = jmespath.compile(text)
        return Expression(name, text, compiled, _evaluator(compiled.parsed))
    except JMESPathError as exc:
        where = (
            f"BRIDGE_MAP_{name.upper()}"
            if route_label == SHORTCUT_LABEL
            else f"{route_label}: field {name}"
        )
        raise ConfigError([f"{where}: {_syntax_error(exc, text)}"]) from None


def _syntax_error(exc: JMESPathError, text: str) -> str:
    """One line: what is wrong and where, without jmespath's multi-line caret drawing."""
    position = getattr(exc, "lex_position", None)
    if position is None:
        return str(exc).splitlines()[0]
    kind = type(exc).__name__.removesuffix("Error").replace("Expression", " expression")
    token = getattr(exc, "token_value", None)
    found = f", unexpected {token!r}" if token not in (None, "") else ""
    return f"invalid JMESPath {text!r}: {kind.lower()} at column {position}{found}"


def compile_route(index: int, spec: RouteSpec, api: Api, label: str | None = None) -> Route:
    """Compile one route, filling in the defaults of DESIGN.md."""
    label = label or f"route {index + 1} (topics {', '.join(spec.topics)})"
    problems = []
    try:
        matcher = TopicMatcher(spec.topics)
    except re.error as exc:
        raise ConfigError([f"{label}: topics: invalid regex: {exc}"]) from None
    texts = {**DEFAULTS, **spec.model_dump(exclude_none=True, exclude={"topics", "when", "filter"})}
    if "source" not in texts:
        if api is Api.PARTNER:
            problems.append(f"{label}: source is required for PutPartnerEvents (api=partner)")
        texts["source"] = DEFAULT_EVENTS_SOURCE
    if api is Api.PARTNER:
        problems.extend(
            f"{label}: {name} is for api=events only" for name in _EVENTS_ONLY if name in texts
        )
    fields: dict[str, Expression] = {}
    for name, text in texts.items():
        try:
            fields[name] = _compile(label, name, text)
        except ConfigError as exc:
            problems.extend(exc.problems)
    when = filt = None
    try:
        when = _compile(label, "when", spec.when) if spec.when else None
        filt = _compile(label, "filter", spec.filter) if spec.filter else None
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    route = Route(index, label, matcher, fields, when, filt, texts["detail"].strip() == "value")
    problems.extend(_check_constants(route, api))
    if problems:
        raise ConfigError(problems)
    return route


def _check_constants(route: Route, api: Api) -> list[str]:
    """A constant source or detail type is checked now, not once per record."""
    problems = []
    is_literal, value = route.fields["source"].literal
    if is_literal:
        try:
            check_source(value, api)
        except RecordError as exc:
            problems.append(f"{route.label}: source: {exc.message}")
    is_literal, value = route.fields["detail_type"].literal
    if is_literal:
        try:
            check_detail_type(value)
        except RecordError as exc:
            problems.append(f"{route.label}: detail_type: {exc.message}")
    return problems


def check_source(value: Any, api: Api) -> str:
    if isinstance(value, str) and _valid_source(value, api):
        return value
    if not isinstance(value, str) or not value:
        raise RecordError(
            Stage.MAP, "InvalidSource", f"source must be a non-empty string, got {_kind(value)}"
        )
    if len(value) > MAX_SOURCE:
        raise RecordError(
            Stage.VALIDATE,
            "SourceTooLong",
            f"source is {len(value)} characters, limit {MAX_SOURCE}",
        )
    if api is Api.PARTNER and not PARTNER_SOURCE.fullmatch(value):
        raise RecordError(
            Stage.VALIDATE,
            "InvalidSource",
            f"source {value!r} is not a partner event source name (aws.partner/<domain>/<name>)",
        )
    return value


@functools.lru_cache(maxsize=1024)
def _valid_source(value: str, api: Api) -> bool:
    """A bridge sends the same few sources millions of times: remember which are valid."""
    return 0 < len(value) <= MAX_SOURCE and (
        api is not Api.PARTNER or PARTNER_SOURCE.fullmatch(value) is not None
    )


def check_detail_type(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise RecordError(
            Stage.MAP,
            "InvalidDetailType",
            f"detail_type must be a non-empty string, got {_kind(value)}",
        )
    if len(value) > MAX_DETAIL_TYPE:
        raise RecordError(
            Stage.VALIDATE,
            "DetailTypeTooLong",
            f"detail_type is {len(value)} characters, limit {MAX_DETAIL_TYPE}",
        )
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number"
    )


def to_resources(value: Any) -> list[str] | None:
    """A list of strings; nulls (a missing field in ``[value.arn]``) are dropped."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError(
            Stage.MAP,
            "InvalidResources",
            f"resources must be a list of strings, got {_kind(value)}",
        )
    resources = [item for item in value if item is not None]
    for item in resources:
        if not isinstance(item, str):
            raise RecordError(
                Stage.MAP, "InvalidResources", f"resources must be strings, got {_kind(item)}"
            )
        if len(item) > MAX_RESOURCE:
            raise RecordError(
                Stage.VALIDATE,
                "ResourceTooLong",
                f"a resource is {len(item)} characters, limit {MAX_RESOURCE}",
            )
    return resources or None


def to_time(value: Any) -> int | None:
    """Epoch milliseconds (number) or RFC 3339 (string, UTC when it has no offset) to epoch
    milliseconds, sub-millisecond digits dropped."""
    if type(value) is int and MIN_TIME_MS <= value <= MAX_TIME_MS:
        return value  # the record timestamp, the default: once per record
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, _NUMBER):
            ms = int(value)  # toward zero; NaN and infinities raise
        elif isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            ms = (parsed - EPOCH) // timedelta(milliseconds=1)
        else:
            raise TypeError
        if MIN_TIME_MS <= ms <= MAX_TIME_MS:
            return ms
        raise ValueError
    except (ValueError, OverflowError):
        raise RecordError(
            Stage.MAP, "InvalidTime", f"time {value!r} is not epoch milliseconds or RFC 3339"
        ) from None
    except TypeError:
        pass
    raise RecordError(
        Stage.MAP,
        "InvalidTime",
        f"time must be epoch milliseconds or an RFC 3339 string, got {_kind(value)}",
    )


_NUMBER = (int, float)  # a tuple: ``int | float`` in isinstance builds a union at each call


def to_detail(value: Any) -> str:
    if not isinstance(value, dict):
        raise RecordError(
            Stage.VALIDATE, "DetailNotObject", f"detail must be a JSON object, got {_kind(value)}"
        )
    return orjson.dumps(value).decode()


def _optional_string(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RecordError(
        Stage.MAP,
        f"Invalid{name.title().replace('_', '')}",
        f"{name} must be a string, got {_kind(value)}",
    )


class Mapper:
    """Maps records to entries: decode, route, filter, build, validate."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        api: Api,
        max_bytes: int,
        value_format: ValueFormat = ValueFormat.JSON,
        tombstones: Tombstones = Tombstones.SKIP,
        event_bus: str | None = None,
        value_decoder: Callable[[bytes, SourceRecord], Any] | None = None,
        key_decoder: Callable[[bytes, SourceRecord], Any] | None = None,
        offload: OffloadPolicy | None = None,
    ) -> None:
        self.routes = list(routes)
        self.api = api
        self.max_bytes = max_bytes
        self.value_format = value_format
        self.tombstones = tombstones
        self.event_bus = event_bus if api is Api.EVENTS else None
        self._by_topic: dict[str, list[Route]] = {}
        self.offload = offload
        # Schema Registry formats (schemas.build_decoders); None: decode_value / the key as text.
        if value_format.uses_registry and value_decoder is None:
            raise ValueError(f"value format {value_format.value} needs a value_decoder")
        self.value_decoder = value_decoder
        self.key_decoder = key_decoder

    def forget_topic(self, topic: str) -> None:
        """The bridge holds no partition of this topic any more: drop what is cached for it."""
        self._by_topic.pop(topic, None)

    def routes_for(self, topic: str) -> list[Route]:
        routes = self._by_topic.get(topic)
        if routes is None:
            routes = [r for r in self.routes if r.topics.matches(topic)]
            self._by_topic[topic] = routes
        return routes

    def map(self, record: SourceRecord) -> Entry | None:
        """The entry for a record, or None when it is skipped on purpose (filter, tombstone)."""
        if record.value is None:
            if self.tombstones is Tombstones.SKIP:
                return None
            if self.tombstones is Tombstones.DEAD_LETTER:
                raise RecordError(Stage.DECODE, "Tombstone", "value is null (tombstone)")
            value = None
        elif self.value_decoder is not None:
            value = self.value_decoder(record.value, record)
        else:
            value = decode_value(record.value, self.value_format)
        env = envelope(record, value)
        if self.key_decoder is not None and record.key is not None:
            env["key"] = self.key_decoder(record.key, record)
        route = self._select(env, record.topic)
        if route.filter is not None and _is_false(route.filter.search(env)):
            return None
        return self._build(route, env, record)

    def _select(self, env: dict[str, Any], topic: str) -> Route:
        for route in self.routes_for(topic):
            if route.applies(env):
                return route
        raise RecordError(Stage.MAP, "NoRoute", f"no route matches topic {topic!r}")

    def _build(self, route: Route, env: dict[str, Any], record: SourceRecord) -> Entry:
        source_of, type_of, resources_of, time_of, bus_of, trace_of = route.plan
        source = route.constant_source or check_source(source_of.search(env), self.api)
        detail_type = route.constant_detail_type or check_detail_type(type_of.search(env))
        detail = self._detail(route, env, record)
        resources = None if resources_of is None else to_resources(resources_of.search(env))
        time_ms = to_time(time_of.search(env))
        bus = (
            self.event_bus if bus_of is None else _optional_string(bus_of.search(env), "event_bus")
        )
        trace = None if trace_of is None else _optional_string(trace_of.search(env), "trace_header")
        size = entry_size(source, detail_type, detail, resources or (), time_ms is not None)
        upload = None
        if size > self.max_bytes and self.offload is not None:
            planned = self.offload.plan(detail, record.topic, record.partition, record.offset)
            if planned is not None:
                detail, upload = planned
                size = entry_size(source, detail_type, detail, resources or (), time_ms is not None)
        if size > self.max_bytes:
            raise RecordError(
                Stage.VALIDATE,
                "EntryTooLarge",
                f"entry is {size} bytes, limit {self.max_bytes} (BRIDGE_EVENTBRIDGE_*_MAX_BYTES)",
            )
        return Entry(
            source,
            detail_type,
            detail,
            resources,
            time_ms,
            bus,
            trace,
            size,
            upload,
            route.record_target,
        )

    def _detail(self, route: Route, env: dict[str, Any], record: SourceRecord) -> str:
        if (
            route.detail_is_value
            and self.value_format is ValueFormat.JSON
            and record.value is not None
            and isinstance(env["value"], dict)
        ):
            # The value already is the JSON text of the object: send it as it came instead
            # of decoding and encoding it again (the hot path of a plain bridge).
            return record.value.decode()
        return to_detail(route.fields["detail"].search(env))


def load_routes(settings: MappingSettings, api: Api, topics: Sequence[str]) -> list[Route]:
    """The routes of ``BRIDGE_MAPPING_FILE``, or the one route of the ``BRIDGE_MAP_*`` shortcut."""
    if settings.mapping_file is not None:
        specs = read_mapping_file(settings.mapping_file)
        routes = _compile_all(specs, api)
    else:
        spec = RouteSpec(topics=["^.*"], **settings.shortcut())
        routes = [compile_route(0, spec, api, label=SHORTCUT_LABEL)]
    uncovered = [
        t for t in topics if not t.startswith("^") and not any(r.topics.matches(t) for r in routes)
    ]
    if uncovered:
        raise ConfigError(
            [f"BRIDGE_MAPPING_FILE: no route for subscribed topic {t!r}" for t in uncovered]
        )
    return routes


def _compile_all(specs: Sequence[RouteSpec], api: Api) -> list[Route]:
    routes, problems = [], []
    for index, spec in enumerate(specs):
        try:
            routes.append(compile_route(index, spec, api))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return routes


def read_mapping_file(path: Path) -> list[RouteSpec]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"BRIDGE_MAPPING_FILE: cannot read {path}: {exc}"]) from None
    try:
        return MappingFile.model_validate(document).routes
    except ValidationError as exc:
        raise ConfigError(
            [f"BRIDGE_MAPPING_FILE: {_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from None


def _location(loc: tuple[int | str, ...]) -> str:
    """``routes.0.source`` as a person counts: ``routes[1].source``."""
    parts = [f"[{p + 1}]" if isinstance(p, int) else f".{p}" for p in loc]
    return "".join(parts).lstrip(".") or "document"
