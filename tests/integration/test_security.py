"""The bridge against a secured Apache Kafka: TLS, SASL (SCRAM, PLAIN), mutual TLS, secrets.

These tests start their own broker, whatever ``BRIDGE_TEST_KAFKA`` says: Apache Kafka with a
SASL_SSL listener (SCRAM-SHA-512/256 and PLAIN) and a mutual-TLS listener, certificates and
users made by the test (:class:`SecuredApacheKafkaBroker`). It needs Java 17 and Maven, as the
``apache`` kind does; where the broker cannot start the tests fail: they are about that peer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafka_eventbridge_testing.brokers import SecuredApacheKafkaBroker, make_tls_files
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge
from tests.integration.conftest import StartBridge
from tests.integration.support import (
    FATAL_EXIT_WITHIN,
    assert_one_fatal_line,
    bridge_env,
    headers_of,
    ids_of,
    json_values,
    kafka_variables,
    produce,
    read_all,
    run_check,
    running_broker,
    topic_with_dead_letters,
    unique,
    wait_until,
)

# The first test may wait for Maven to fetch the broker's jars on a fresh machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredApacheKafkaBroker]:
    yield from running_broker(SecuredApacheKafkaBroker(), "the secured Apache Kafka broker")


def test_scram_sha_512_over_tls_delivers_and_dead_letters(
    secured: SecuredApacheKafkaBroker, fake: FakeEventBridge, start_bridge: StartBridge
) -> None:
    topic, group = topic_with_dead_letters(secured)
    good = json_values("s", 20)
    produce(secured, topic, [*good[:10], b"{not json", *good[10:]])
    env = bridge_env(
        secured, topic, group, fake.url, **kafka_variables(secured.sasl_config("bridge"))
    )
    assert env["BRIDGE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["BRIDGE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "BRIDGE_KAFKA_SSL_CA_LOCATION" in env
    process = start_bridge(env)

    wait_until(lambda: fake.stats().entries_accepted >= 20, 60, "20 entries delivered")
    dead = read_all(secured, f"{group}.dlq", expected=1, timeout=30)
    wait_until(lambda: process.metric("kafka_eventbridge_dead_letters_total") == 1, 30, "DLQ ack")
    assert process.terminate() == 0

    assert sorted(ids_of(e.detail for e in fake.entries())) == sorted(f"s-{i}" for i in range(20))
    assert len(dead) == 1
    assert dead[0].value() == b"{not json"
    assert headers_of(dead[0])["bridge.error.stage"] == b"decode"


def test_a_wrong_password_is_one_readable_fatal_error(
    secured: SecuredApacheKafkaBroker, fake: FakeEventBridge, start_bridge: StartBridge
) -> None:
    topic, group = topic_with_dead_letters(secured)
    wrong = "not-the-password-" + unique("pw")
    properties = {**secured.sasl_config("bridge"), "sasl.password": wrong}
    started = time.monotonic()
    process = start_bridge(
        bridge_env(secured, topic, group, fake.url, **kafka_variables(properties))
    )
    message = assert_one_fatal_line(process, "authentication", "sasl_password")
    assert time.monotonic() - started < FATAL_EXIT_WITHIN
    assert wrong not in process.log()
    assert "SCRAM-SHA-512" in message  # librdkafka's own reason is kept


@pytest.mark.parametrize("case", ["untrusted-broker", "wrong-host-name", "no-client-certificate"])
def test_a_refused_tls_handshake_is_a_fatal_error(
    secured: SecuredApacheKafkaBroker,
    fake: FakeEventBridge,
    start_bridge: StartBridge,
    tmp_path: Path,
    case: str,
) -> None:
    """A CA that did not sign the broker's certificate, a host name the certificate does not
    carry (hostname verification is on by default), or no client certificate where the broker
    requires one: refused at once with the settings to check, not retried forever."""
    topic, group = topic_with_dead_letters(secured)
    if case == "untrusted-broker":
        other_ca = make_tls_files(tmp_path / "other").ca
        properties = {**secured.sasl_config("bridge"), "ssl.ca.location": str(other_ca)}
        env = bridge_env(secured, topic, group, fake.url, **kafka_variables(properties))
        reason = "certificate verify failed"
    elif case == "wrong-host-name":
        # The same listener, reached as "localhost": the certificate names 127.0.0.1 only.
        properties = secured.sasl_config("bridge")
        env = bridge_env(secured, topic, group, fake.url, **kafka_variables(properties))
        port = secured.bootstrap_servers.rpartition(":")[2]
        env["BRIDGE_KAFKA_BOOTSTRAP_SERVERS"] = f"localhost:{port}"
        reason = "certificate verify failed"
    else:
        properties = {"security.protocol": "SSL", "ssl.ca.location": str(secured.tls.ca)}
        env = bridge_env(secured, topic, group, fake.url, **kafka_variables(properties))
        env["BRIDGE_KAFKA_BOOTSTRAP_SERVERS"] = secured.ssl_bootstrap_servers
        reason = "bad certificate"
    started = time.monotonic()
    message = assert_one_fatal_line(start_bridge(env), "tls", "ssl_ca_location")
    assert reason in message
    assert time.monotonic() - started < 20  # not after the 10 s metadata timeout


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "mutual-tls"])
def test_check_logs_in_with_each_mechanism(
    secured: SecuredApacheKafkaBroker, fake: FakeEventBridge, mechanism: str
) -> None:
    """``check`` reaches the brokers (admin client) and the DLQ (producer) alike."""
    topic, group = topic_with_dead_letters(secured)
    if mechanism == "mutual-tls":
        properties = {"security.protocol": "SSL", **secured.mtls_config()}
        env = bridge_env(secured, topic, group, fake.url, **kafka_variables(properties))
        env["BRIDGE_KAFKA_BOOTSTRAP_SERVERS"] = secured.ssl_bootstrap_servers
    else:
        properties = secured.sasl_config("bridge", mechanism)
        env = bridge_env(secured, topic, group, fake.url, **kafka_variables(properties))
    result = run_check(env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ok   kafka brokers" in output
    assert f"ok   topic {topic}: exists" in output
    assert f"ok   dead-letter topic {group}.dlq" in output


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_never_show_in_logs_metrics_or_check_output(
    secured: SecuredApacheKafkaBroker, fake: FakeEventBridge, start_bridge: StartBridge
) -> None:
    """DEBUG logs (librdkafka's debug contexts included), /metrics, /readyz, /healthz and
    ``check`` output, through start, delivery, a dead letter and shutdown: no secret value.

    The SASL password and the client key's password are real here (SCRAM over TLS with a
    client certificate whose key is encrypted), so a leak would be of live values.
    """
    topic, group = topic_with_dead_letters(secured)
    aws_secret = "aws-secret-" + unique("key")
    fake.add_credentials("leak-test", aws_secret)  # the stand-in checks every signature
    properties = {**secured.sasl_config("bridge"), **secured.mtls_config()}
    env = bridge_env(
        secured,
        topic,
        group,
        fake.url,
        **kafka_variables(properties),
        BRIDGE_KAFKA_DEBUG="conf,security,broker,generic",
        BRIDGE_LOG_LEVEL="DEBUG",
        AWS_ACCESS_KEY_ID="leak-test",
        AWS_SECRET_ACCESS_KEY=aws_secret,
    )
    secrets = {
        "sasl.password": secured.passwords["bridge"],
        "ssl.key.password": secured.tls.client_key_password,
        "AWS_SECRET_ACCESS_KEY": aws_secret,
    }
    produce(secured, topic, [*json_values("p", 5), b"{not json"])
    process = start_bridge(env)
    wait_until(lambda: fake.stats().entries_accepted >= 5, 60, "5 entries delivered")
    wait_until(lambda: process.metric("kafka_eventbridge_dead_letters_total") == 1, 30, "DLQ ack")
    served = {path: process.get(path) for path in ("/metrics", "/readyz", "/healthz")}
    assert all(status == 200 for status, _ in served.values()), served
    assert process.terminate() == 0
    check = run_check(env)
    assert check.returncode == 0, check.stdout + check.stderr

    log = process.log()
    # The debug path was really taken: librdkafka's configuration dump and SASL exchange.
    assert '"logger": "kafka_eventbridge.librdkafka"' in log
    assert "sasl.password = [redacted]" in log
    assert "SCRAM" in log
    shown = {
        "bridge log": log,
        "check output": check.stdout + check.stderr,
        **{path: body for path, (_, body) in served.items()},
    }
    for where, text in shown.items():
        for name, value in secrets.items():
            assert value not in text, f"{name} shows in the {where}"
