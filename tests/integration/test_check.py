"""``kafka-eventbridge check`` against real peers: a readable report, secrets masked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kafka_eventbridge_testing import free_port
from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge
from tests.integration.support import bridge_env, run_check

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-do-not-print"


def test_check_reports_a_usable_configuration_without_secrets(
    kafka_broker: KafkaBroker,
    fake: FakeEventBridge,
    topic: Callable[..., str],
    group: str,
    dlq: str,
) -> None:
    name = topic()
    env = bridge_env(
        kafka_broker,
        name,
        group,
        fake.url,
        BRIDGE_KAFKA_SASL_PASSWORD=SECRET,
        BRIDGE_KAFKA_SSL_KEY_PASSWORD=SECRET,
    )
    result = run_check(env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert SECRET not in output
    assert "BRIDGE_KAFKA_SASL_PASSWORD=***" in output
    assert f"ok   topic {name}: exists" in output
    assert f"ok   dead-letter topic {dlq}" in output
    assert "ok   eventbridge endpoint" in output
    assert "result: usable" in output


def test_check_fails_readably_when_the_endpoint_is_unreachable(
    kafka_broker: KafkaBroker, topic: Callable[..., str], group: str, dlq: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = run_check(bridge_env(kafka_broker, topic(), group, nowhere))
    assert result.returncode == 1
    assert "FAIL eventbridge endpoint" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_refuses_bad_settings_with_one_line_each() -> None:
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "",
        "BRIDGE_HTTP_PORT": "99999",
        "BRIDGE_EVENTBRIDGE_API": "kinesis",
    }
    result = run_check({k: v for k, v in env.items()})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.strip().startswith("BRIDGE_HTTP_PORT:") for line in lines)
    assert any(line.strip().startswith("BRIDGE_EVENTBRIDGE_API:") for line in lines)
    assert any(line.strip().startswith("BRIDGE_KAFKA_TOPICS: required") for line in lines)
    assert "Traceback" not in result.stderr
