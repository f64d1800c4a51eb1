"""Settings: BRIDGE_* variables, one readable line per problem, secrets never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kafka_eventbridge.errors import ConfigError
from kafka_eventbridge.settings import (
    Api,
    Ordering,
    Settings,
    Tombstones,
    ValueFormat,
    load_settings,
    unknown_variables,
)

REQUIRED = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "BRIDGE_KAFKA_TOPICS": "orders"}


@pytest.fixture(autouse=True)
def _no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def load(**variables: str) -> Settings:
    return load_settings({**REQUIRED, **variables})


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    return caught.value.problems


def test_defaults() -> None:
    settings = load()

    assert settings.kafka.topics == ["orders"]
    assert settings.kafka.group_id == "kafka-eventbridge"
    assert settings.eventbridge.api is Api.PARTNER
    assert settings.eventbridge.max_bytes == 262_144
    assert settings.batch_max_entries == 20
    assert settings.dlq_topic == "kafka-eventbridge.dlq"
    assert settings.mapping.value_format is ValueFormat.JSON
    assert settings.mapping.tombstones is Tombstones.SKIP
    assert settings.pipeline.ordering is Ordering.NONE
    assert settings.telemetry.http_port == 8080
    assert settings.telemetry.log_format == "json"
    assert settings.kafka_properties.values == {}


def test_events_api_limits() -> None:
    settings = load(BRIDGE_EVENTBRIDGE_API="events", BRIDGE_EVENTBRIDGE_EVENT_BUS="orders-bus")

    assert settings.batch_max_entries == 10
    assert settings.eventbridge.max_bytes == 1_048_576
    assert settings.eventbridge.event_bus == "orders-bus"


def test_topics_are_a_comma_list_with_regexes() -> None:
    settings = load(BRIDGE_KAFKA_TOPICS=" orders , ^orders\\..+,,payments ")

    assert settings.kafka.topics == ["orders", "^orders\\..+", "payments"]


def test_missing_required_variables_one_line_each() -> None:
    assert problems({}) == [
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS: required but not set",
        "BRIDGE_KAFKA_TOPICS: required but not set",
    ]


def test_empty_topic_list_is_refused() -> None:
    (line,) = problems({**REQUIRED, "BRIDGE_KAFKA_TOPICS": " , "})

    assert line.startswith("BRIDGE_KAFKA_TOPICS: ")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BRIDGE_EVENTBRIDGE_API", "rest", "Input should be 'partner' or 'events' (got 'rest')"),
        ("BRIDGE_HTTP_PORT", "70000", "less than or equal to 65535 (got '70000')"),
        ("BRIDGE_HTTP_PORT", "http", "valid integer"),
        ("BRIDGE_BATCH_LINGER_MS", "-1", "greater than or equal to 0 (got '-1')"),
        ("BRIDGE_MAX_IN_FLIGHT_REQUESTS", "0", "greater than or equal to 1"),
        ("BRIDGE_DLQ_MAX_RATIO", "1.5", "less than or equal to 1"),
        ("BRIDGE_ORDERING", "strict", "'none' or 'partition'"),
        ("BRIDGE_TOMBSTONES", "drop", "'skip', 'dead-letter' or 'map'"),
        (
            "BRIDGE_VALUE_FORMAT",
            "yaml",
            "'json', 'string', 'bytes', 'avro', 'protobuf', 'json-schema', 'glue-avro', "
            "'glue-protobuf' or 'glue-json-schema'",
        ),
        ("BRIDGE_LOG_FORMAT", "xml", "'json' or 'text'"),
        ("BRIDGE_RETRY_DEADLINE_SECONDS", "-5", "greater than or equal to 0"),
    ],
)
def test_bad_values_are_readable_lines(variable: str, value: str, expected: str) -> None:
    (line,) = problems({**REQUIRED, variable: value})

    assert line.startswith(f"{variable}: ")
    assert expected in line


def test_several_problems_are_reported_together() -> None:
    found = problems(
        {
            "BRIDGE_KAFKA_TOPICS": "orders",
            "BRIDGE_EVENTBRIDGE_API": "rest",
            "BRIDGE_HTTP_PORT": "-1",
            "BRIDGE_BATCH_LINGER_MS": "-1",
        }
    )

    assert [line.split(":")[0] for line in found] == [
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS",
        "BRIDGE_EVENTBRIDGE_API",
        "BRIDGE_BATCH_LINGER_MS",
        "BRIDGE_HTTP_PORT",
    ]


def test_log_level_is_case_insensitive() -> None:
    assert load(BRIDGE_LOG_LEVEL="debug").telemetry.log_level == "DEBUG"


def test_kafka_properties_pass_through() -> None:
    settings = load(
        BRIDGE_KAFKA_SESSION_TIMEOUT_MS="6000",
        BRIDGE_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        BRIDGE_KAFKA_GROUP_ID="bridge",
    )

    assert settings.kafka_properties.values == {
        "session.timeout.ms": "6000",
        "security.protocol": "SASL_SSL",
    }
    assert settings.kafka.group_id == "bridge"


def test_empty_kafka_property_is_refused() -> None:
    assert problems({**REQUIRED, "BRIDGE_KAFKA_CLIENT_ID": ""}) == [
        "BRIDGE_KAFKA_CLIENT_ID: empty value for librdkafka 'client.id'"
    ]


SECRETS = {
    "BRIDGE_KAFKA_SASL_PASSWORD": "hunter2-sasl",
    "BRIDGE_KAFKA_SSL_KEY_PASSWORD": "hunter2-key",
    "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "hunter2-oauth",
}


def test_secrets_are_passed_to_librdkafka_but_never_shown() -> None:
    settings = load(**SECRETS, BRIDGE_KAFKA_SASL_USERNAME="bridge")

    assert settings.kafka_properties.values["sasl.password"] == "hunter2-sasl"
    assert settings.kafka_properties.values["ssl.key.password"] == "hunter2-key"
    view = settings.redacted()
    assert view["BRIDGE_KAFKA_SASL_PASSWORD"] == "***"
    assert view["BRIDGE_KAFKA_SSL_KEY_PASSWORD"] == "***"
    assert view["BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET"] == "***"
    assert view["BRIDGE_KAFKA_SASL_USERNAME"] == "bridge"
    for shown in (str(view), repr(settings), str(settings), repr(settings.kafka_properties)):
        assert "hunter2" not in shown


def test_redacted_view_names_every_setting_by_its_variable() -> None:
    view = load(BRIDGE_KAFKA_GROUP_ID="bridge").redacted()

    assert view["BRIDGE_KAFKA_TOPICS"] == ["orders"]
    assert view["BRIDGE_EVENTBRIDGE_API"] == "partner"
    assert view["BRIDGE_HTTP_PORT"] == 8080
    assert view["BRIDGE_BATCH_LINGER_MS"] == 20
    assert view["(dead-letter topic)"] == "bridge.dlq"


def test_event_bus_with_partner_api_is_refused() -> None:
    (line,) = problems({**REQUIRED, "BRIDGE_EVENTBRIDGE_EVENT_BUS": "orders-bus"})

    assert line.startswith("BRIDGE_EVENTBRIDGE_EVENT_BUS: only for BRIDGE_EVENTBRIDGE_API=events")


@pytest.mark.parametrize(
    ("api", "entries", "accepted"),
    [
        ("partner", "20", True),
        ("partner", "21", False),
        ("events", "10", True),
        ("events", "11", False),
    ],
)
def test_batch_max_entries_within_the_api_limit(api: str, entries: str, accepted: bool) -> None:
    environ = {**REQUIRED, "BRIDGE_EVENTBRIDGE_API": api, "BRIDGE_BATCH_MAX_ENTRIES": entries}
    if accepted:
        assert load_settings(environ).batch_max_entries == int(entries)
    else:
        (line,) = problems(environ)
        assert line.startswith("BRIDGE_BATCH_MAX_ENTRIES: ")


def test_events_batch_limit_names_the_call() -> None:
    environ = {**REQUIRED, "BRIDGE_EVENTBRIDGE_API": "events", "BRIDGE_BATCH_MAX_ENTRIES": "15"}

    assert problems(environ) == [
        "BRIDGE_BATCH_MAX_ENTRIES: 15 is above the 10 entries a events call takes"
    ]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "kafka-eventbridge.dlq"),
        ({"BRIDGE_KAFKA_GROUP_ID": "orders-bridge"}, "orders-bridge.dlq"),
        ({"BRIDGE_KAFKA_GROUP_ID": "g", "BRIDGE_DLQ_TOPIC": "dead"}, "dead"),
    ],
)
def test_dead_letter_topic(variables: dict[str, str], expected: str) -> None:
    assert load(**variables).dlq_topic == expected


def test_mapping_file_and_shortcut_together_are_refused(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("routes: []\n", encoding="utf-8")

    assert problems(
        {**REQUIRED, "BRIDGE_MAPPING_FILE": str(mapping), "BRIDGE_MAP_DETAIL": "value"}
    ) == ["BRIDGE_MAPPING_FILE: set together with BRIDGE_MAP_* expressions; use one or the other"]


def test_missing_mapping_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    assert problems({**REQUIRED, "BRIDGE_MAPPING_FILE": str(missing)}) == [
        f"BRIDGE_MAPPING_FILE: no such file: {missing}"
    ]


def test_shortcut_expressions() -> None:
    settings = load(BRIDGE_MAP_SOURCE="'aws.partner/a.com/x'", BRIDGE_MAP_FILTER="value.ok")

    assert settings.mapping.shortcut() == {"source": "'aws.partner/a.com/x'", "filter": "value.ok"}


def test_backoff_initial_above_max_is_refused() -> None:
    found = problems(
        {**REQUIRED, "BRIDGE_RETRY_BACKOFF_INITIAL_MS": "500", "BRIDGE_RETRY_BACKOFF_MAX_MS": "100"}
    )

    assert found == ["BRIDGE_RETRY_BACKOFF_INITIAL_MS: must not exceed BRIDGE_RETRY_BACKOFF_MAX_MS"]


def test_explicit_environment_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_KAFKA_TOPICS", "from-process")
    monkeypatch.setenv("BRIDGE_HTTP_PORT", "9999")

    assert problems({"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}) == [
        "BRIDGE_KAFKA_TOPICS: required but not set"
    ]
    assert load().telemetry.http_port == 8080


def test_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**REQUIRED, "BRIDGE_KAFKA_CLIENT_ID": "bridge-1"}.items():
        monkeypatch.setenv(name, value)

    settings = load_settings()
    assert settings.kafka.topics == ["orders"]
    assert settings.kafka_properties.values == {"client.id": "bridge-1"}


def test_unknown_variables_are_listed() -> None:
    environ = {
        **REQUIRED,
        "BRIDGE_LOG_LEVLE": "DEBUG",
        "BRIDGE_MAP_DETAILS": "value",
        "BRIDGE_MAP_DETAIL": "value",
        "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "6000",  # a librdkafka property, not a typo
        "BRIDGE_TEST_KAFKA": "embedded",
        "BRIDGE_EVENTBRIDGE_EVENTS_MAX_BYTES": "262144",
        "HOSTNAME": "bridge-0",
    }

    assert unknown_variables(environ) == ["BRIDGE_LOG_LEVLE", "BRIDGE_MAP_DETAILS"]


def test_a_global_endpoint_is_for_put_events_only() -> None:
    refused = problems({**REQUIRED, "BRIDGE_EVENTBRIDGE_ENDPOINT_ID": "abcde.veo"})
    assert any(
        p.startswith("BRIDGE_EVENTBRIDGE_ENDPOINT_ID: global endpoints are for PutEvents")
        for p in refused
    )
    settings = load(BRIDGE_EVENTBRIDGE_API="events", BRIDGE_EVENTBRIDGE_ENDPOINT_ID="abcde.veo")
    assert settings.eventbridge.endpoint_id == "abcde.veo"


def test_offload_settings_default_off() -> None:
    assert load().offload.bucket is None
    on = load(BRIDGE_OFFLOAD_S3_BUCKET="large-events", BRIDGE_OFFLOAD_S3_FIELD="payload")
    assert (on.offload.bucket, on.offload.prefix, on.offload.field) == (
        "large-events",
        "kafka-eventbridge/",
        "payload",
    )
