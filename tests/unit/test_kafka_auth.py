"""Kafka security: MSK IAM tokens, security settings for both clients, fatal errors, log lines.

The MSK IAM token is signed by AWS's real signer, offline, from fake credentials in the
environment: signing is local SigV4, so no AWS endpoint is needed to check what it makes.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from kafka_eventbridge import kafka_auth
from kafka_eventbridge.consumer import consumer_config
from kafka_eventbridge.deadletter import producer_config
from kafka_eventbridge.errors import ConfigError
from kafka_eventbridge.kafka_auth import MskIamTokenProvider, security_config
from kafka_eventbridge.settings import (
    KafkaProperties,
    KafkaSettings,
    is_secret_property,
    kafka_passthrough,
)

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"

_AWS_SOURCES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No BRIDGE_* or AWS credential source from the machine; no instance metadata calls."""
    for name in list(os.environ):
        if name.startswith("BRIDGE_") or name in _AWS_SOURCES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


def signed_url(token: str) -> str:
    """The token is the presigned URL, base64url without padding."""
    assert "=" not in token
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


# -- the MSK IAM token ---------------------------------------------------------------------


@pytest.mark.usefixtures("fake_credentials")
def test_msk_iam_token_is_a_signed_connect_request_expiring_in_seconds() -> None:
    before = time.time()
    token, expiry = MskIamTokenProvider("eu-west-1")("")

    url = urlsplit(signed_url(token))
    query = parse_qs(url.query)
    assert (url.scheme, url.hostname) == ("https", "kafka.eu-west-1.amazonaws.com")
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    credential = query["X-Amz-Credential"][0]
    assert credential.startswith(f"{ACCESS_KEY}/")
    assert credential.endswith("/eu-west-1/kafka-cluster/aws4_request")
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Security-Token"] == [SESSION_TOKEN]
    assert len(query["X-Amz-Signature"][0]) == 64
    assert SECRET_KEY not in signed_url(token)
    # confluent-kafka wants epoch seconds (the signer gives milliseconds): 15 minutes ahead.
    assert isinstance(expiry, float)
    assert before + 899 - 1 <= expiry <= time.time() + 900


@pytest.mark.usefixtures("fake_credentials")
def test_both_clients_accept_the_token_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    """confluent-kafka calls ``oauth_cb`` while building a client and waits up to 10 s for a
    usable token: a callback of the wrong shape would fail or stall here."""
    monkeypatch.setenv("BRIDGE_MSK_IAM", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topics=["orders"])
    config = consumer_config(kafka, {})
    provider = config["oauth_cb"]
    assert isinstance(provider, MskIamTokenProvider)
    assert provider.region == "us-east-2"
    started = time.monotonic()
    producer = Producer(producer_config(config))
    consumer = Consumer(config)
    assert time.monotonic() - started < 5
    consumer.close()
    assert producer.flush(0) == 0


def test_a_failed_refresh_keeps_the_token_while_it_is_valid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = 1_000_000.0
    answers: list[tuple[str, int] | Exception] = [
        ("token-1", int((now + 900) * 1000)),
        RuntimeError("credential source unreachable"),
        RuntimeError("still unreachable"),
    ]

    def signer(region: str) -> tuple[str, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    provider = MskIamTokenProvider("us-east-1", signer=signer, clock=lambda: now)
    assert provider() == ("token-1", now + 900)
    with caplog.at_level(logging.WARNING, logger="kafka_eventbridge.kafka_auth"):
        assert provider() == ("token-1", now + 900)  # librdkafka will ask again soon
        now += 890  # 10 s left: too little to keep serving it
        with pytest.raises(RuntimeError, match="still unreachable"):
            provider()
    assert "credential source unreachable" in caplog.text


def test_missing_credentials_are_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with pytest.raises(ConfigError) as caught:
        security_config({}, {"BRIDGE_MSK_IAM": "true", "AWS_REGION": "us-east-1"})
    (problem,) = caught.value.problems
    assert problem.startswith("BRIDGE_MSK_IAM: cannot sign an MSK IAM token for us-east-1")
    assert "NoCredentialsError" in problem


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "region"),
    [
        ({"BRIDGE_MSK_IAM_REGION": "eu-central-1", "AWS_REGION": "us-east-1"}, "eu-central-1"),
        ({"BRIDGE_EVENTBRIDGE_REGION": "eu-west-1", "AWS_REGION": "us-east-1"}, "eu-west-1"),
        ({"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-west-2"}, "us-east-1"),
        ({"AWS_DEFAULT_REGION": "us-west-2"}, "us-west-2"),
        ({}, None),
    ],
)
def test_msk_region_comes_from_the_aws_settings(
    environ: dict[str, str], region: str | None
) -> None:
    assert kafka_auth.msk_region(environ) == region


@pytest.mark.usefixtures("fake_credentials")
@pytest.mark.parametrize(("value", "enabled"), [("true", True), ("1", True), ("false", False)])
def test_msk_iam_switch(value: str, enabled: bool) -> None:
    added = security_config({}, {"BRIDGE_MSK_IAM": value, "AWS_REGION": "us-east-1"})
    assert ("oauth_cb" in added) is enabled
    if enabled:
        assert added["security.protocol"] == "SASL_SSL"
        assert added["sasl.mechanism"] == "OAUTHBEARER"


def test_msk_iam_refuses_what_contradicts_it() -> None:
    properties = {
        "security.protocol": "SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.oauthbearer.method": "oidc",
    }
    with pytest.raises(ConfigError) as caught:
        security_config(properties, {"BRIDGE_MSK_IAM": "true"})
    found = caught.value.problems
    assert [p.split(":", 1)[0] for p in found] == [
        "BRIDGE_KAFKA_SECURITY_PROTOCOL",
        "BRIDGE_KAFKA_SASL_MECHANISM",
        "BRIDGE_KAFKA_SASL_OAUTHBEARER_METHOD",
        "BRIDGE_MSK_IAM",  # no region either
    ]
    assert "AWS_REGION" in found[-1]


def test_msk_iam_switch_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_MSK_IAM: must be true or false"):
        security_config({}, {"BRIDGE_MSK_IAM": "msk"})


SECURITY_PROPERTIES = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "bridge",
    "sasl.password": "hunter2-sasl",
    "ssl.ca.location": "ca.pem",
    "ssl.certificate.location": "client.pem",
    "ssl.key.location": "client.key",
    "ssl.key.password": "hunter2-key",
    "ssl.endpoint.identification.algorithm": "https",
    "enable.ssl.certificate.verification": "true",
    "ssl.keystore.location": "client.p12",
    "ssl.keystore.password": "hunter2-p12",
    "sasl.oauthbearer.config": "scope=kafka",
}


def test_both_clients_keep_every_security_property() -> None:
    kafka = KafkaSettings(bootstrap_servers="kafka:9093", topics=["orders"])
    consumer = consumer_config(kafka, SECURITY_PROPERTIES)
    producer = producer_config(consumer)
    for config in (consumer, producer):
        assert {k: config[k] for k in SECURITY_PROPERTIES} == SECURITY_PROPERTIES
        assert "oauth_cb" not in config


def test_the_fetch_defaults_yield_to_the_users_and_stay_off_the_producer() -> None:
    """A fetch waits for 64 KiB or 10 ms by default; BRIDGE_KAFKA_FETCH_WAIT_MAX_MS=500 (many
    mostly idle replicas) replaces the wait and keeps the size, and the dead-letter producer,
    which has no fetches, gets neither."""
    kafka = KafkaSettings(bootstrap_servers="kafka:9092", topics=["orders"])
    ours = consumer_config(kafka, {})
    theirs = consumer_config(kafka, kafka_passthrough({"BRIDGE_KAFKA_FETCH_WAIT_MAX_MS": "500"}))
    assert (ours["fetch.min.bytes"], ours["fetch.wait.max.ms"]) == ("65536", "10")
    assert (theirs["fetch.min.bytes"], theirs["fetch.wait.max.ms"]) == ("65536", "500")
    assert not [name for name in producer_config(theirs) if name.startswith("fetch.")]


@pytest.mark.usefixtures("fake_credentials")
def test_both_clients_share_the_msk_iam_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_MSK_IAM", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    kafka = KafkaSettings(bootstrap_servers="b-1.msk:9098", topics=["orders"])
    consumer = consumer_config(kafka, {"sasl.mechanism": "OAUTHBEARER"})
    producer = producer_config(consumer)
    assert producer["oauth_cb"] is consumer["oauth_cb"]
    assert producer["security.protocol"] == consumer["security.protocol"] == "SASL_SSL"


# -- failures ------------------------------------------------------------------------------


def test_a_refused_login_is_fatal_and_says_what_to_check() -> None:
    err = KafkaError(
        KafkaError._AUTHENTICATION,
        "sasl_ssl://b:9096/bootstrap: SASL authentication error: Authentication failed "
        "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
    )
    assert kafka_auth.is_fatal(err)
    fatal = kafka_auth.fatal_error(err, "kafka")
    assert fatal.code == "_AUTHENTICATION"
    assert fatal.message.startswith("kafka: Kafka authentication failed: sasl_ssl://b:9096")
    assert "BRIDGE_KAFKA_SASL_PASSWORD" in fatal.message


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (KafkaError._SSL, "SSL handshake failed: certificate verify failed", "TLS"),
        (
            KafkaError._TRANSPORT,
            "Receive failed: SSL routines::ssl/tls alert bad certificate",
            "TLS",
        ),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed", "authorization"),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, "Group authorization failed", "authorization"),
    ],
)
def test_security_failures_are_fatal(code: int, text: str, kind: str) -> None:
    err = KafkaError(code, text)
    assert kafka_auth.is_fatal(err)
    assert f"Kafka {kind} failed: {text};" in kafka_auth.fatal_error(err, "kafka").message


def test_network_failures_are_not_fatal() -> None:
    err = KafkaError(KafkaError._TRANSPORT, "Connect to ipv4#10.0.0.1:9092 failed: refused")
    assert not kafka_auth.is_fatal(err)
    assert not kafka_auth.is_security_failure(KafkaError(KafkaError._ALL_BROKERS_DOWN, "down"))


# -- librdkafka's log lines ----------------------------------------------------------------


@pytest.fixture
def client_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger=kafka_auth.CLIENT_LOGGER):
        yield caplog


def test_client_log_lines_mask_secrets_and_stay_warnings(
    client_log: pytest.LogCaptureFixture,
) -> None:
    security_config({"sasl.password": "pa55-word-x", "sasl.username": "bridge"}, {})
    logger = kafka_auth.client_logger()
    logger.error("%s [%s] %s", "FAIL", "rdkafka#consumer-1", "login pa55-word-x as bridge")
    (record,) = client_log.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == "FAIL [rdkafka#consumer-1] login *** as bridge"


@pytest.mark.usefixtures("fake_credentials")
def test_client_log_lines_mask_msk_tokens_and_the_aws_secret(
    client_log: pytest.LogCaptureFixture,
) -> None:
    added = security_config({}, {**os.environ, "BRIDGE_MSK_IAM": "true", "AWS_REGION": "a-1"})
    token, _expiry = added["oauth_cb"]("")
    kafka_auth.client_logger().debug("sent %s signed with %s", token, SECRET_KEY)
    assert client_log.records[-1].getMessage() == "sent *** signed with ***"


# -- OAUTHBEARER with OIDC -------------------------------------------------------------------

OIDC = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "OAUTHBEARER",
    "sasl.oauthbearer.method": "oidc",
    "sasl.oauthbearer.client.id": "bridge",
    "sasl.oauthbearer.client.secret": "client-secret-value",
    "sasl.oauthbearer.token.endpoint.url": "https://idp.example.com/oauth2/token",
}


def test_oidc_settings_are_left_to_librdkafka_which_accepts_them() -> None:
    added = security_config(OIDC, {})

    assert added == {}  # librdkafka fetches and refreshes the tokens itself
    consumer = Consumer(
        consumer_config(KafkaSettings(bootstrap_servers="127.0.0.1:9", topics=["t"]), OIDC)
    )
    consumer.close()


def test_oidc_names_each_missing_or_contradicting_setting() -> None:
    properties = {
        "security.protocol": "SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.oauthbearer.method": "OIDC",
        "sasl.oauthbearer.token.endpoint.url": "ftp://idp.example.com/token",
    }
    with pytest.raises(ConfigError) as caught:
        security_config(properties, {})

    assert [p.split(":", 1)[0] for p in caught.value.problems] == [
        "BRIDGE_KAFKA_SASL_MECHANISM",
        "BRIDGE_KAFKA_SECURITY_PROTOCOL",
        "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_ID",
        "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
        "BRIDGE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
    ]


def test_the_jwt_bearer_grant_needs_no_client_secret() -> None:
    properties = {
        **{k: v for k, v in OIDC.items() if not k.startswith("sasl.oauthbearer.client")},
        "sasl.oauthbearer.grant.type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
    }
    assert kafka_auth.oidc_problems(properties) == []


def test_a_plain_http_token_endpoint_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    plain = {**OIDC, "sasl.oauthbearer.token.endpoint.url": "http://idp.example.com/token"}
    local = {**OIDC, "sasl.oauthbearer.token.endpoint.url": "http://127.0.0.1:8080/token"}

    with caplog.at_level(logging.WARNING, logger="kafka_eventbridge"):
        assert kafka_auth.oidc_problems(local) == []
        assert not caplog.records
        assert kafka_auth.oidc_problems(plain) == []

    assert "plain http" in caplog.records[0].getMessage()


def test_the_oidc_client_secret_is_a_masked_secret() -> None:
    settings = {"BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "client-secret-value"}
    properties = KafkaProperties(kafka_passthrough(settings))

    assert is_secret_property("sasl.oauthbearer.client.secret")
    assert not is_secret_property("sasl.oauthbearer.token.endpoint.url")  # a URL, shown
    assert properties.redacted() == {"sasl.oauthbearer.client.secret": "***"}
    assert "client-secret-value" not in repr(properties)


def test_a_refused_oidc_login_names_the_oidc_settings() -> None:
    security_config(OIDC, {})
    err = KafkaError(
        KafkaError._AUTHENTICATION,
        'Failed to acquire SASL OAUTHBEARER token: {"error": "invalid_client"}',
    )
    try:
        message = kafka_auth.fatal_error(err, "kafka").message
    finally:
        security_config({}, {})  # back to the user-and-password hint

    assert "invalid_client" in message
    assert "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET" in message
    assert "BRIDGE_KAFKA_SASL_PASSWORD" not in message
