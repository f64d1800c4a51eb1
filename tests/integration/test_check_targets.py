"""``check`` reaches the targets: buses, partner sources, the offload bucket, the Glue registry.

The targets live in moto's server (EventBridge, S3, Glue, STS). "Not permitted" answers come
from an endpoint that answers every call with access denied, as AWS does for a role without
the describe permissions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kafka_eventbridge.publisher import make_client
from kafka_eventbridge.settings import Settings, load_settings
from kafka_eventbridge.targets import check_targets
from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.moto import ACCOUNT, client, moto_server
from tests.integration.aws_peers import reset_moto, signing_endpoint
from tests.integration.support import bridge_env, run_check

pytestmark = pytest.mark.integration

PARTNER = "aws.partner/example.com/orders"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """moto with a bus ``commerce``, a partner source, a bucket and a Glue registry."""
    with moto_server() as url:
        reset_moto(url)
        events = client("events", url)
        events.create_event_bus(Name="commerce")
        events.create_partner_event_source(Name=PARTNER, Account=ACCOUNT)
        client("s3", url).create_bucket(Bucket="large-events")
        client("glue", url).create_registry(RegistryName="orders-registry")
        yield url
        reset_moto(url)


@pytest.fixture
def aws_env(moto: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "BRIDGE_AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto")
    return moto


def settings(tmp_path: Path, routes: list[dict[str, Any]] | None = None, **env: str) -> Settings:
    values = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "BRIDGE_KAFKA_TOPICS": "orders"}
    if routes is not None:
        path = tmp_path / "mapping.yaml"
        path.write_bytes(orjson.dumps({"routes": routes}))  # JSON is YAML
        values["BRIDGE_MAPPING_FILE"] = str(path)
    return load_settings(values | env)


def rows(settings: Settings) -> dict[str, tuple[str, str]]:
    return dict(check_targets(settings, make_client(settings.eventbridge, 1)))


def test_each_constant_bus_of_the_routes_is_described(aws_env: str, tmp_path: Path) -> None:
    routes: list[dict[str, Any]] = [
        {"topics": ["orders"], "when": "value.kind == 'a'", "event_bus": "'commerce'"},
        {"topics": ["orders"], "when": "value.kind == 'b'", "event_bus": "'missing-bus'"},
        {"topics": ["orders"], "when": "value.kind == 'c'", "event_bus": "value.bus"},
        {"topics": ["orders"]},  # BRIDGE_EVENTBRIDGE_EVENT_BUS, else the default bus
        {"topics": ["orders"], "event_bus": "'commerce'"},  # named once, asked once
    ]
    report = rows(settings(tmp_path, routes, BRIDGE_EVENTBRIDGE_API="events"))

    assert report["event bus commerce"][0] == "ok"
    assert "event-bus/commerce" in report["event bus commerce"][1]
    assert report["event bus missing-bus"] == ("FAIL", "does not exist (ResourceNotFoundException)")
    assert report["event bus default"][0] == "ok"
    assert report["event bus of route 3 (topics orders)"] == ("skip", "computed per record")
    assert len(report) == 4


def test_the_bus_setting_is_described_for_routes_that_name_none(
    aws_env: str, tmp_path: Path
) -> None:
    report = rows(
        settings(
            tmp_path,
            BRIDGE_EVENTBRIDGE_API="events",
            BRIDGE_EVENTBRIDGE_EVENT_BUS=f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/gone",
        )
    )
    [(name, (status, _))] = report.items()
    assert name.endswith("event-bus/gone") and status == "FAIL"


def test_constant_partner_sources_are_described(aws_env: str, tmp_path: Path) -> None:
    routes = [
        {"topics": ["orders"], "when": "value.a", "source": f"'{PARTNER}'"},
        {"topics": ["orders"], "when": "value.b", "source": "'aws.partner/example.com/nope'"},
        {"topics": ["orders"], "source": "value.source"},
    ]
    report = rows(settings(tmp_path, routes))

    assert report[f"partner event source {PARTNER}"] == ("ok", "exists")
    assert report["partner event source aws.partner/example.com/nope"][0] == "FAIL"
    assert report["source of route 3 (topics orders)"][0] == "skip"


def test_the_offload_bucket_and_the_glue_registry_are_looked_up(
    aws_env: str, tmp_path: Path
) -> None:
    good = rows(
        settings(
            tmp_path,
            BRIDGE_MAP_SOURCE=f"'{PARTNER}'",
            BRIDGE_OFFLOAD_S3_BUCKET="large-events",
            BRIDGE_VALUE_FORMAT="glue-avro",
            BRIDGE_GLUE_REGISTRY_NAME="orders-registry",
        )
    )
    assert good["offload bucket large-events"] == ("ok", "exists")
    assert good["glue registry orders-registry"][0] == "ok"

    bad = rows(
        settings(
            tmp_path,
            BRIDGE_MAP_SOURCE=f"'{PARTNER}'",
            BRIDGE_OFFLOAD_S3_BUCKET="no-such-bucket",
            BRIDGE_KEY_FORMAT="glue-json-schema",
            BRIDGE_GLUE_REGISTRY_NAME="no-such-registry",
        )
    )
    assert bad["offload bucket no-such-bucket"][0] == "FAIL"
    assert bad["glue registry no-such-registry"] == (
        "FAIL",
        "does not exist (EntityNotFoundException)",
    )


def denied(service: str, _body: bytes) -> tuple[int, bytes]:
    if service == "s3":
        return 403, b""
    return 400, orjson.dumps({"__type": "AccessDeniedException", "message": "not authorized"})


def test_a_permission_the_check_lacks_is_a_warning_not_a_failure(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with signing_endpoint(lambda _key: ("moto", None), denied) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
        report = rows(
            settings(
                tmp_path,
                BRIDGE_EVENTBRIDGE_API="events",
                BRIDGE_EVENTBRIDGE_EVENT_BUS="commerce",
                BRIDGE_OFFLOAD_S3_BUCKET="large-events",
                BRIDGE_VALUE_FORMAT="glue-protobuf",
                BRIDGE_GLUE_REGISTRY_NAME="orders-registry",
            )
        )
    assert {name: status for name, (status, _) in report.items()} == {
        "event bus commerce": "warn",
        "offload bucket large-events": "warn",
        "glue registry orders-registry": "warn",
    }
    assert "events:DescribeEventBus" in report["event bus commerce"][1]
    assert {call.service for call in endpoint.calls} == {"events", "s3", "glue"}


# -- the command ----------------------------------------------------------------------------


def test_check_reports_targets_and_the_assumed_role(
    kafka_broker: KafkaBroker,
    moto: str,
    topic: Callable[..., str],
    group: str,
    dlq: str,
) -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/commerce-writer"  # moto: the bus is in this account
    env = bridge_env(
        kafka_broker,
        topic(),
        group,
        moto,
        BRIDGE_EVENTBRIDGE_API="events",
        BRIDGE_EVENTBRIDGE_EVENT_BUS="commerce",
        BRIDGE_MAP_SOURCE="'orders'",
        BRIDGE_AWS_ROLE_ARN=role,
        BRIDGE_AWS_ROLE_EXTERNAL_ID="ext-4411",
    )
    result = run_check(env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"ok   aws credentials: assumed {role} (assume-role)" in output
    assert "ok   event bus commerce: exists" in output
    assert "ext-4411" not in output

    missing = run_check({**env, "BRIDGE_EVENTBRIDGE_EVENT_BUS": "nope"})
    assert missing.returncode == 1
    assert "FAIL event bus nope: does not exist" in missing.stdout


def test_check_fails_readably_when_the_role_cannot_be_assumed(
    kafka_broker: KafkaBroker, moto: str, topic: Callable[..., str], group: str, dlq: str
) -> None:
    from kafka_eventbridge_testing import free_port

    env = bridge_env(
        kafka_broker,
        topic(),
        group,
        moto,
        AWS_ENDPOINT_URL_STS=f"http://127.0.0.1:{free_port()}",
        BRIDGE_AWS_ROLE_ARN="arn:aws:iam::111122223333:role/commerce-writer",
    )
    result = run_check(env)
    assert result.returncode == 1
    assert "FAIL aws credentials: cannot assume arn:aws:iam::111122223333:role/commerce-writer" in (
        result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr
