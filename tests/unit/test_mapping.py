"""Mapping: what entry a record becomes, and which mappings are refused at start."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from kafka_eventbridge.errors import ConfigError, RecordError, Stage
from kafka_eventbridge.mapping import (
    Entry,
    Mapper,
    RouteSpec,
    _compile,
    compile_route,
    entry_size,
    load_routes,
)
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.settings import Api, MappingSettings, Tombstones, ValueFormat

SOURCE = "aws.partner/acme.com/orders"
SOURCE_EXPR = f"'{SOURCE}'"
ORDER = b'{"type":"order.created","id":7}'
TIMESTAMP = 1767225600123  # 2026-01-01T00:00:00.123Z


@pytest.fixture(autouse=True)
def _no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # MappingSettings reads BRIDGE_* from the process environment: keep the tests hermetic.
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def record(
    value: bytes | None = ORDER,
    *,
    topic: str = "orders",
    timestamp: int | None = TIMESTAMP,
    key: bytes | None = b"customer-7",
    headers: list[tuple[str, bytes | None]] | None = None,
) -> SourceRecord:
    return SourceRecord(
        topic=topic,
        partition=3,
        offset=42,
        timestamp=timestamp,
        key=key,
        value=value,
        headers=headers if headers is not None else [("trace-id", b"abc")],
    )


def mapper(
    *routes: dict[str, Any],
    api: Api = Api.PARTNER,
    max_bytes: int = 262_144,
    value_format: ValueFormat = ValueFormat.JSON,
    tombstones: Tombstones = Tombstones.SKIP,
    event_bus: str | None = None,
) -> Mapper:
    """A mapper of the given routes; a route without topics covers ``orders``."""
    compiled = []
    for index, fields in enumerate(routes or ({},)):
        spec: dict[str, Any] = {"topics": ["orders"], **fields}
        if api is Api.PARTNER:
            spec.setdefault("source", SOURCE_EXPR)
        compiled.append(compile_route(index, RouteSpec(**spec), api))
    return Mapper(
        compiled,
        api=api,
        max_bytes=max_bytes,
        value_format=value_format,
        tombstones=tombstones,
        event_bus=event_bus,
    )


def mapped(m: Mapper, rec: SourceRecord) -> Entry:
    entry = m.map(rec)
    assert entry is not None, "the record was skipped"
    return entry


def refused(m: Mapper, rec: SourceRecord) -> RecordError:
    with pytest.raises(RecordError) as caught:
        m.map(rec)
    return caught.value


def config_problems(**fields: Any) -> list[str]:
    """The problems a partner route of ``orders`` with these fields is refused with."""
    spec = RouteSpec(**{"topics": ["orders"], **fields})
    with pytest.raises(ConfigError) as caught:
        compile_route(0, spec, Api.PARTNER)
    return caught.value.problems


# -- defaults ----------------------------------------------------------------------------


def test_defaults_map_topic_value_and_timestamp() -> None:
    entry = mapped(mapper(), record())

    assert entry.source == SOURCE
    assert entry.detail_type == "orders"
    assert orjson.loads(entry.detail) == {"type": "order.created", "id": 7}
    assert entry.time == datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    assert entry.resources is None
    request = entry.request()
    assert set(request) == {"Source", "DetailType", "Detail", "Time"}
    assert entry.event_bus is None and entry.trace_header is None


def test_record_without_timestamp_has_no_time() -> None:
    entry = mapped(mapper(), record(timestamp=None))

    assert entry.time is None
    assert "Time" not in entry.request()
    assert entry.size == len(SOURCE) + len("orders") + len(ORDER)


def test_events_api_defaults_source_and_uses_the_configured_bus() -> None:
    entry = mapped(mapper(api=Api.EVENTS, event_bus="orders-bus"), record())

    assert entry.source == "kafka-eventbridge"
    assert entry.request()["EventBusName"] == "orders-bus"


def test_partner_api_never_sends_an_event_bus() -> None:
    entry = mapped(mapper(event_bus="orders-bus"), record())

    assert "EventBusName" not in entry.request()


# -- routes ------------------------------------------------------------------------------


def routed() -> Mapper:
    return mapper(
        {"topics": ["^orders\\..+"], "detail_type": "'regional'"},
        {"topics": ["orders", "orders.eu", "payments"], "detail_type": "'plain'"},
        {"topics": ["^pay.*"], "detail_type": "'payments-regex'"},
    )


@pytest.mark.parametrize(
    ("topic", "detail_type"),
    [
        ("orders.eu", "regional"),  # named in route 2, but route 1's regex comes first
        ("orders", "plain"),
        ("payments", "plain"),
        ("payouts", "payments-regex"),
    ],
)
def test_first_matching_route_wins(topic: str, detail_type: str) -> None:
    assert mapped(routed(), record(topic=topic)).detail_type == detail_type


def test_record_of_no_route_is_a_map_error() -> None:
    error = refused(routed(), record(topic="shipments"))

    assert (error.stage, error.code) == (Stage.MAP, "NoRoute")
    assert "shipments" in error.message


def test_regex_topics_match_like_a_kafka_subscription() -> None:
    # librdkafka subscribes "^orders" to every topic that starts with "orders"
    # (POSIX regexec searches); the route written the same way must cover the same topics.
    m = mapper({"topics": ["^orders"]}, {"topics": ["^pay$"], "detail_type": "'exact'"})

    assert mapped(m, record(topic="orders.eu")).detail_type == "orders.eu"
    assert mapped(m, record(topic="pay")).detail_type == "exact"
    assert refused(m, record(topic="payments")).code == "NoRoute"


def test_when_selects_among_routes_of_the_same_topic() -> None:
    m = mapper(
        {"when": "value.type == 'order.created'", "detail_type": "'created'"},
        {"detail_type": "'other'"},
    )

    assert mapped(m, record()).detail_type == "created"
    assert mapped(m, record(b'{"type":"order.paid"}')).detail_type == "other"


@pytest.mark.parametrize("flag", [False, None, "", [], {}], ids=repr)
def test_falsy_filter_skips_the_record(flag: Any) -> None:
    value = orjson.dumps({"flag": flag})

    assert mapper({"filter": "value.flag"}).map(record(value)) is None


@pytest.mark.parametrize("flag", [0, True, "no", [0], {"a": None}], ids=repr)
def test_truthy_filter_keeps_the_record(flag: Any) -> None:
    value = orjson.dumps({"flag": flag})

    assert mapper({"filter": "value.flag"}).map(record(value)) is not None


def test_filter_on_a_missing_field_skips() -> None:
    assert mapper({"filter": "value.status != 'draft'"}).map(record()) is not None
    draft = b'{"status":"draft"}'
    assert mapper({"filter": "value.status != 'draft'"}).map(record(draft)) is None


# -- source ------------------------------------------------------------------------------


def test_partner_route_without_source_is_refused() -> None:
    spec = RouteSpec(topics=["orders"])
    with pytest.raises(ConfigError) as caught:
        compile_route(0, spec, Api.PARTNER)

    assert caught.value.problems == [
        "route 1 (topics orders): source is required for PutPartnerEvents (api=partner)"
    ]


def test_constant_invalid_partner_source_is_refused_at_start() -> None:
    problems = config_problems(source="'acme.orders'")

    assert len(problems) == 1
    assert problems[0].startswith("route 1 (topics orders): source: ")
    assert "'acme.orders'" in problems[0]


def test_constant_source_of_any_shape_is_fine_for_events() -> None:
    route = compile_route(0, RouteSpec(topics=["orders"], source="'acme.orders'"), Api.EVENTS)

    assert route.fields["source"].text == "'acme.orders'"


def test_a_constant_source_and_detail_type_are_not_evaluated_per_record() -> None:
    """Checked once when the route is compiled, they are taken as they are for each record."""
    m = mapper({"detail_type": "'order'"})
    (route,) = m.routes
    for name in ("source", "detail_type"):  # evaluating either now would fail the record
        object.__setattr__(route.fields[name], "search", lambda _env: None)

    entry = mapped(m, record())
    assert (entry.source, entry.detail_type) == (SOURCE, "order")
    from_record = mapper({"source": "value.src"}).routes[0]
    assert (from_record.constant_source, from_record.constant_detail_type) == (None, None)


@pytest.mark.parametrize(
    "source",
    [
        "aws.partner/acme.com",  # one segment, two required
        "aws.partner/acme.com/orders events",
        "aws.partnerx/acme.com/orders",
        "aws.partner/" + "a" * 250 + "/orders",  # over 256 characters
    ],
)
def test_per_record_bad_partner_source_is_a_validate_error(source: str) -> None:
    value = orjson.dumps({"src": source})
    error = refused(mapper({"source": "value.src"}), record(value))

    assert error.stage is Stage.VALIDATE
    assert error.code in {"InvalidSource", "SourceTooLong"}


def test_per_record_good_partner_source_passes() -> None:
    value = orjson.dumps({"src": "aws.partner/acme.com/tenant-1/orders"})

    assert mapped(mapper({"source": "value.src"}), record(value)).source.endswith("orders")


def test_per_record_missing_source_is_a_map_error() -> None:
    error = refused(mapper({"source": "value.src"}), record())

    assert (error.stage, error.code) == (Stage.MAP, "InvalidSource")


@pytest.mark.parametrize("field", ["event_bus", "trace_header"])
def test_events_only_fields_are_refused_with_partner(field: str) -> None:
    problems = config_problems(source=SOURCE_EXPR, **{field: "'x'"})

    assert problems == [f"route 1 (topics orders): {field} is for api=events only"]


def test_events_only_fields_map_with_events() -> None:
    m = mapper(
        {"event_bus": "value.bus", "trace_header": 'headers."trace-id"'},
        api=Api.EVENTS,
        event_bus="default",
    )
    request = mapped(m, record(b'{"bus":"tenant-bus"}')).request()

    assert request["EventBusName"] == "tenant-bus"
    assert request["TraceHeader"] == "abc"


# -- expressions and the mapping file ----------------------------------------------------


def test_expression_syntax_errors_name_route_and_field() -> None:
    problems = config_problems(source=SOURCE_EXPR, detail_type="value.[", filter="a ||")

    assert len(problems) == 2
    assert problems[0].startswith("route 1 (topics orders): field detail_type: ")
    assert problems[1].startswith("route 1 (topics orders): field filter: ")
    assert all("\n" not in p for p in problems)


def test_invalid_topic_regex_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        compile_route(0, RouteSpec(topics=["^orders("], source=SOURCE_EXPR), Api.PARTNER)

    assert "topics: invalid regex" in caught.value.problems[0]


def file_settings(tmp_path: Path, text: str) -> MappingSettings:
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return MappingSettings(mapping_file=path)


GOOD_FILE = f"""
routes:
  - topics: ["orders", "^orders\\\\..+"]
    filter: "value.status != 'draft'"
    source: "{SOURCE_EXPR}"
    detail_type: "value.type || 'order.event'"
    resources: "[value.customer_arn]"
"""


def test_mapping_file_is_loaded(tmp_path: Path) -> None:
    routes = load_routes(file_settings(tmp_path, GOOD_FILE), Api.PARTNER, ["orders"])
    m = Mapper(routes, api=Api.PARTNER, max_bytes=262_144)
    value = b'{"type":"order.paid","customer_arn":"arn:aws:iam::1:user/c"}'

    entry = mapped(m, record(value, topic="orders.us"))
    assert entry.detail_type == "order.paid"
    assert entry.resources == ["arn:aws:iam::1:user/c"]


def test_unknown_key_in_mapping_file_is_refused_with_its_location(tmp_path: Path) -> None:
    text = GOOD_FILE + "    detial: value\n"
    with pytest.raises(ConfigError) as caught:
        load_routes(file_settings(tmp_path, text), Api.PARTNER, ["orders"])

    assert caught.value.problems == [
        "BRIDGE_MAPPING_FILE: routes[1].detial: Extra inputs are not permitted"
    ]


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_routes(file_settings(tmp_path, "rutes: []\n"), Api.PARTNER, [])

    assert "BRIDGE_MAPPING_FILE: rutes: Extra inputs are not permitted" in caught.value.problems
    assert any(p.startswith("BRIDGE_MAPPING_FILE: routes: ") for p in caught.value.problems)


@pytest.mark.parametrize("text", ["", "routes: [\n", "- just a list\n"], ids=repr)
def test_unusable_mapping_file_is_one_readable_problem(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_routes(file_settings(tmp_path, text), Api.PARTNER, [])

    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("BRIDGE_MAPPING_FILE: ")


def test_problems_of_several_routes_are_reported_together(tmp_path: Path) -> None:
    text = """
routes:
  - topics: [orders]
  - topics: [payments]
    source: "'aws.partner/acme.com/payments'"
    time: "value.("
"""
    with pytest.raises(ConfigError) as caught:
        load_routes(file_settings(tmp_path, text), Api.PARTNER, [])

    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("route 1 (topics orders): source is required")
    assert problems[1].startswith("route 2 (topics payments): field time: ")


def test_subscribed_topic_without_route_is_refused(tmp_path: Path) -> None:
    settings = file_settings(tmp_path, GOOD_FILE)
    with pytest.raises(ConfigError) as caught:
        load_routes(settings, Api.PARTNER, ["orders", "payments", "^refunds.*", "orders.eu"])

    assert caught.value.problems == [
        "BRIDGE_MAPPING_FILE: no route for subscribed topic 'payments'"
    ]


def test_shortcut_route_covers_every_topic() -> None:
    settings = MappingSettings(map_source=SOURCE_EXPR, map_detail_type="value.type")
    routes = load_routes(settings, Api.PARTNER, ["orders", "payments"])
    m = Mapper(routes, api=Api.PARTNER, max_bytes=262_144)

    assert mapped(m, record(topic="payments")).detail_type == "order.created"


def test_shortcut_errors_are_labelled_with_the_variables() -> None:
    settings = MappingSettings(map_source=SOURCE_EXPR, map_filter="value.[")
    with pytest.raises(ConfigError) as caught:
        load_routes(settings, Api.PARTNER, ["orders"])

    assert caught.value.problems[0].startswith("BRIDGE_MAP_FILTER: invalid JMESPath")


# -- values ------------------------------------------------------------------------------


def test_string_values_are_strings_in_the_envelope() -> None:
    m = mapper({"detail": "{text: value}"}, value_format=ValueFormat.STRING)

    assert mapped(m, record("héllo".encode())).detail == '{"text":"héllo"}'


def test_bytes_values_are_base64_in_the_envelope() -> None:
    m = mapper({"detail": "{data: value}"}, value_format=ValueFormat.BYTES)

    assert mapped(m, record(b"\x00\xff\xfe")).detail == '{"data":"AP/+"}'


@pytest.mark.parametrize(
    ("value_format", "value", "code"),
    [
        (ValueFormat.JSON, b"{not json", "InvalidJson"),
        (ValueFormat.JSON, b"\xff", "InvalidJson"),
        (ValueFormat.STRING, b"caf\xe9", "InvalidUtf8"),
    ],
)
def test_undecodable_values_are_decode_errors(
    value_format: ValueFormat, value: bytes, code: str
) -> None:
    error = refused(mapper({"detail": "{v: value}"}, value_format=value_format), record(value))

    assert (error.stage, error.code) == (Stage.DECODE, code)


def test_tombstones_are_skipped_by_default() -> None:
    assert mapper().map(record(None)) is None


def test_tombstones_can_be_dead_lettered() -> None:
    error = refused(mapper(tombstones=Tombstones.DEAD_LETTER), record(None))

    assert (error.stage, error.code) == (Stage.DECODE, "Tombstone")


def test_tombstones_can_be_mapped_with_a_null_value() -> None:
    m = mapper({"detail": "{key: key, deleted: value == null}"}, tombstones=Tombstones.MAP)

    assert orjson.loads(mapped(m, record(None)).detail) == {"key": "customer-7", "deleted": True}


def test_mapped_tombstone_with_default_detail_is_not_an_object() -> None:
    error = refused(mapper(tombstones=Tombstones.MAP), record(None))

    assert (error.stage, error.code) == (Stage.VALIDATE, "DetailNotObject")


@pytest.mark.parametrize("value", [b"[1,2]", b'"text"', b"5", b"null", b"true"], ids=repr)
def test_detail_must_be_an_object(value: bytes) -> None:
    error = refused(mapper(), record(value))

    assert (error.stage, error.code) == (Stage.VALIDATE, "DetailNotObject")


def test_detail_of_the_whole_value_is_the_original_text_byte_for_byte() -> None:
    original = '{ "b" : 1.50,\n  "a": [1e3, "\\u00e9", "é"], "z": {} }\n'.encode()
    entry = mapped(mapper({"detail": " value "}), record(original))

    assert entry.detail.encode() == original
    assert entry.size == 14 + len(SOURCE) + len("orders") + len(original)


def test_detail_of_part_of_the_value_is_compact_json() -> None:
    value = b'{"inner": { "b" : 1.5, "a": "\\u00e9" }}'

    assert mapped(mapper({"detail": "value.inner"}), record(value)).detail == '{"b":1.5,"a":"é"}'


def test_keys_and_headers_that_are_not_utf8_do_not_fail_the_record() -> None:
    rec = record(key=b"\xffid", headers=[("bin", b"\xfe\x01"), ("none", None)])
    m = mapper({"detail": "{key: key, bin: headers.bin, none: headers.none}"})

    assert orjson.loads(mapped(m, rec).detail) == {
        "key": "\\xffid",
        "bin": "\\xfe\x01",
        "none": None,
    }


# -- detail type -------------------------------------------------------------------------


def test_detail_type_of_128_characters_is_accepted() -> None:
    value = orjson.dumps({"type": "é" * 128})

    assert mapped(mapper({"detail_type": "value.type"}), record(value)).detail_type == "é" * 128


def test_detail_type_over_128_characters_is_a_validate_error() -> None:
    value = orjson.dumps({"type": "t" * 129})
    error = refused(mapper({"detail_type": "value.type"}), record(value))

    assert (error.stage, error.code) == (Stage.VALIDATE, "DetailTypeTooLong")


def test_constant_detail_type_over_128_characters_is_refused_at_start() -> None:
    problems = config_problems(source=SOURCE_EXPR, detail_type=f"'{'t' * 129}'")

    assert problems == [
        "route 1 (topics orders): detail_type: detail_type is 129 characters, limit 128"
    ]


@pytest.mark.parametrize("value", [b"{}", b'{"type":""}', b'{"type":3}'], ids=repr)
def test_detail_type_must_be_a_non_empty_string(value: bytes) -> None:
    error = refused(mapper({"detail_type": "value.type"}), record(value))

    assert (error.stage, error.code) == (Stage.MAP, "InvalidDetailType")


# -- resources ---------------------------------------------------------------------------


def test_null_resources_are_dropped() -> None:
    value = b'{"arn":"arn:aws:s3:::bucket"}'
    entry = mapped(mapper({"resources": "[value.arn, value.missing]"}), record(value))

    assert entry.resources == ["arn:aws:s3:::bucket"]
    assert entry.request()["Resources"] == ["arn:aws:s3:::bucket"]


def test_only_null_resources_send_none() -> None:
    entry = mapped(mapper({"resources": "[value.missing]"}), record())

    assert entry.resources is None
    assert "Resources" not in entry.request()


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("value.arn", b'{"arn":"arn:aws:s3:::bucket"}'),
        ("value", b'{"a":1}'),
        ("[value.n]", b'{"n":1}'),
        ("[value.o]", b'{"o":{}}'),
    ],
)
def test_resources_must_be_a_list_of_strings(expression: str, value: bytes) -> None:
    error = refused(mapper({"resources": expression}), record(value))

    assert (error.stage, error.code) == (Stage.MAP, "InvalidResources")


def test_resource_over_2048_characters_is_a_validate_error() -> None:
    value = orjson.dumps({"arn": "a" * 2049})
    error = refused(mapper({"resources": "[value.arn]"}), record(value))

    assert (error.stage, error.code) == (Stage.VALIDATE, "ResourceTooLong")


# -- time --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (1767225600999, datetime(2026, 1, 1, 0, 0, 0, 999_000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (-1, datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
        (1767225600123.9, datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)),
        ("2026-01-01T12:00:00Z", datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2026-01-01T12:00:00.123456+02:00", datetime(2026, 1, 1, 10, 0, 0, 123_000, tzinfo=UTC)),
        ("2026-01-01T12:00:00-05:30", datetime(2026, 1, 1, 17, 30, tzinfo=UTC)),
        ("2026-01-01T12:00:00", datetime(2026, 1, 1, 12, tzinfo=UTC)),  # no offset: UTC
    ],
    ids=repr,
)
def test_time_from_epoch_ms_or_rfc3339(given: Any, expected: datetime) -> None:
    value = orjson.dumps({"at": given})
    entry = mapped(mapper({"time": "value.at"}), record(value))

    assert entry.time == expected
    assert entry.time is not None and entry.time.utcoffset() is not None
    assert entry.time.utcoffset() == expected.utcoffset()


def test_missing_time_sends_none() -> None:
    entry = mapped(mapper({"time": "value.at"}), record())

    assert entry.time is None
    assert entry.size == len(SOURCE) + len("orders") + len(ORDER)


@pytest.mark.parametrize("given", ["yesterday", "2026-13-01T00:00:00Z", True, {"s": 1}, [1]])
def test_unparseable_time_is_a_map_error(given: Any) -> None:
    value = orjson.dumps({"at": given})
    error = refused(mapper({"time": "value.at"}), record(value))

    assert (error.stage, error.code) == (Stage.MAP, "InvalidTime")


@pytest.mark.parametrize(
    "given",
    [b"1e300", b"253402300800000", b"-62135596800001", b'"0001-01-01T00:00:00+01:00"'],
    ids=["1e300", "year 10000", "before year 1", "year 0 in UTC"],
)
def test_time_out_of_range_is_a_map_error(given: bytes) -> None:
    error = refused(mapper({"time": "value.at"}), record(b'{"at":' + given + b"}"))

    assert (error.stage, error.code) == (Stage.MAP, "InvalidTime")


@pytest.mark.parametrize(
    ("given", "sent"),
    [(1767225600123, 1767225600.123), (1767225600000, 1767225600), (-1, -0.001), (-1000, -1)],
)
def test_time_goes_on_the_wire_as_epoch_seconds(given: int, sent: float) -> None:
    entry = mapped(mapper({"time": "value.at"}), record(orjson.dumps({"at": given})))

    wire = entry.wire()["Time"]
    assert wire == sent and type(wire) is type(sent)
    assert entry.request()["Time"].timestamp() == sent


# -- size --------------------------------------------------------------------------------


def test_entry_size_counts_utf8_bytes_and_14_for_time() -> None:
    # "é" is 2 bytes, "😀" 4, "ü" 2: characters would give a smaller number.
    assert entry_size("a", "é", '{"x":"😀"}', ["ü", "b"], has_time=True) == 14 + 1 + 2 + 12 + 2 + 1
    assert entry_size("a", "é", '{"x":"😀"}', ["ü", "b"], has_time=False) == 18


def test_mapped_entry_size_with_multibyte_characters() -> None:
    value = '{"type":"café ☕","arn":"arn:aws:s3:::bücket","name":"Zoë 😀"}'.encode()
    m = mapper({"detail_type": "value.type", "resources": "[value.arn]"})
    entry = mapped(m, record(value))

    # Time 14 + Source 27 + DetailType "café ☕" 9 + Detail 68 (60 characters)
    # + Resource "arn:aws:s3:::bücket" 20 (19 characters).
    assert len(value) == 68
    assert entry.size == 14 + 27 + 9 + 68 + 20


def test_entry_at_the_limit_passes_and_one_byte_over_is_too_large() -> None:
    size = 14 + len(SOURCE) + len("orders") + len(ORDER)

    assert mapped(mapper(max_bytes=size), record()).size == size
    error = refused(mapper(max_bytes=size - 1), record())
    assert (error.stage, error.code) == (Stage.VALIDATE, "EntryTooLarge")
    assert f"{size} bytes, limit {size - 1}" in error.message


def test_entry_too_large_counts_bytes_not_characters() -> None:
    ascii_value = orjson.dumps({"s": "e" * 100})
    wide_value = orjson.dumps({"s": "é" * 100})
    limit = 14 + len(SOURCE) + len("orders") + len(ascii_value)

    assert mapped(mapper(max_bytes=limit), record(ascii_value)).size == limit
    assert refused(mapper(max_bytes=limit), record(wide_value)).code == "EntryTooLarge"


def test_expression_failing_at_run_time_is_a_map_error() -> None:
    # abs() of a string is a JMESPath type error, known only once the record is seen.
    error = refused(mapper({"detail_type": "to_string(abs(value.type))"}), record())

    assert (error.stage, error.code) == (Stage.MAP, "ExpressionFailed")
    assert error.message.startswith("detail_type: ")


# -- the shortcut evaluator ------------------------------------------------------------------

SHORTCUT_EXPRESSIONS = [
    "value",
    "value.type",
    "value.a.b.c",
    "value.a.b || topic",
    "value.a && value.b",
    "value.a || value.b || 'fallback'",
    "(value.a || value.b).c",
    "@",
    "'constant'",
    "`0`",
    "key || `null`",
]
SHORTCUT_VALUES: list[Any] = [
    None,
    0,
    0.0,
    False,
    True,
    "",
    "x",
    [],
    [1],
    {},
    {"a": 0},
    {"a": "", "b": []},
    {"a": {}, "b": {"c": 1}},
    {"a": {"b": {"c": False}}},
    {"a": {"b": "not an object"}},
    {"a": [{"b": 1}], "b": 2},
    {"type": "order.created"},
]


@pytest.mark.parametrize("text", SHORTCUT_EXPRESSIONS)
def test_shortcut_evaluator_agrees_with_jmespath(text: str) -> None:
    expression = _compile("route 1", "detail", text)
    assert expression.fast is not None, "this expression should take the shortcut"
    for value in SHORTCUT_VALUES:
        env = {"topic": "orders", "key": None, "value": value}
        assert expression.search(env) == expression.compiled.search(env), (text, value)
        assert type(expression.search(env)) is type(expression.compiled.search(env))
