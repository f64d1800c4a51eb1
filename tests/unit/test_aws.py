"""Role settings (BRIDGE_AWS_ROLE_*) and the AssumeRole parameters they make."""

from __future__ import annotations

import pytest

from kafka_eventbridge.aws import assume_role_arguments
from kafka_eventbridge.errors import ConfigError
from kafka_eventbridge.settings import load_settings

ROLE = "arn:aws:iam::111122223333:role/partner-bridge"


def test_role_settings_are_validated_without_echoing_the_external_id() -> None:
    base = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "b:9092", "BRIDGE_KAFKA_TOPICS": "t"}
    settings = load_settings(
        base | {"BRIDGE_AWS_ROLE_ARN": ROLE, "BRIDGE_AWS_ROLE_EXTERNAL_ID": "partner-7f3a"}
    )
    assert settings.aws.role_arn == ROLE
    assert "partner-7f3a" not in repr(settings.redacted())

    bad = base | {
        "BRIDGE_AWS_ROLE_ARN": "partner-bridge",
        "BRIDGE_AWS_ROLE_DURATION_SECONDS": "60",
    }
    with pytest.raises(ConfigError) as refused:
        load_settings(bad)
    text = "\n".join(refused.value.problems)
    assert "BRIDGE_AWS_ROLE_ARN" in text
    assert "BRIDGE_AWS_ROLE_DURATION_SECONDS" in text

    secret_looking = {"BRIDGE_AWS_ROLE_EXTERNAL_ID": "has spaces and a secret"}
    with pytest.raises(ConfigError) as refused:
        load_settings(base | {"BRIDGE_AWS_ROLE_ARN": ROLE} | secret_looking)
    [problem] = refused.value.problems
    assert problem.startswith("BRIDGE_AWS_ROLE_EXTERNAL_ID:") and "value not shown" in problem
    assert "has spaces" not in problem
    with pytest.raises(ConfigError, match="only used with BRIDGE_AWS_ROLE_ARN"):
        load_settings(base | {"BRIDGE_AWS_ROLE_EXTERNAL_ID": "partner-7f3a"})


def test_the_settings_become_the_assume_role_parameters() -> None:
    base = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "b:9092", "BRIDGE_KAFKA_TOPICS": "t"}
    plain = load_settings(base | {"BRIDGE_AWS_ROLE_ARN": ROLE}).aws
    assert assume_role_arguments(plain) == {
        "RoleSessionName": "kafka-eventbridge",
        "DurationSeconds": 3600,
    }
    partner = load_settings(
        base
        | {
            "BRIDGE_AWS_ROLE_ARN": ROLE,
            "BRIDGE_AWS_ROLE_EXTERNAL_ID": "partner-7f3a",
            "BRIDGE_AWS_ROLE_SESSION_NAME": "orders-bridge",
            "BRIDGE_AWS_ROLE_DURATION_SECONDS": "900",
        }
    ).aws
    assert assume_role_arguments(partner) == {
        "RoleSessionName": "orders-bridge",
        "DurationSeconds": 900,
        "ExternalId": "partner-7f3a",
    }
