"""The bridge against Apache Kafka behind an identity provider: SASL OAUTHBEARER with OIDC.

librdkafka fetches tokens itself (``sasl.oauthbearer.method=oidc``, client credentials) from
the test's identity provider on loopback, which signs them (RS256) and serves the JWKS; Kafka
validates each token with its ``OAuthBearerValidatorCallbackHandler`` (signature by the JWKS,
issuer, audience, expiry) and makes every OAUTHBEARER session re-authenticate within
:data:`REAUTH_MS`. Like the other secured-broker tests, this starts its own Apache Kafka
whatever ``BRIDGE_TEST_KAFKA`` says; where it cannot start (Java 17 and Maven are needed) the
tests fail: they are about that peer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge
from tests.integration.conftest import StartBridge
from tests.integration.oidc import Client, IdentityProvider, OidcApacheKafkaBroker, SigningKey
from tests.integration.support import (
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REAUTH_MS = 8000  # OAUTHBEARER sessions must authenticate again within this


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider().start()
    try:
        yield idp
    finally:
        idp.stop()


@pytest.fixture(scope="module")
def broker(provider: IdentityProvider) -> Iterator[OidcApacheKafkaBroker]:
    kafka = OidcApacheKafkaBroker(provider, reauth_ms=REAUTH_MS)
    yield from running_broker(kafka, "Apache Kafka with OAUTHBEARER")


@pytest.fixture
def client(provider: IdentityProvider) -> Client:
    """A client registered for this test alone, so its tokens can be counted."""
    return provider.register(unique("bridge"))


def oidc_env(
    broker: OidcApacheKafkaBroker, client: Client, endpoint: str, **extra: str
) -> tuple[dict[str, str], str, str]:
    topic, group = topic_with_dead_letters(broker)
    variables = kafka_variables(broker.oidc_config(client))
    return bridge_env(broker, topic, group, endpoint, **{**variables, **extra}), topic, group


def test_oidc_tokens_log_in_the_consumer_and_the_dead_letter_producer(
    broker: OidcApacheKafkaBroker,
    provider: IdentityProvider,
    client: Client,
    fake: FakeEventBridge,
    start_bridge: StartBridge,
) -> None:
    """Delivery and a dead letter through OAUTHBEARER; at DEBUG (librdkafka's security and
    broker contexts included) neither the client secret nor any token shows in the log."""
    env, topic, group = oidc_env(
        broker,
        client,
        fake.url,
        BRIDGE_LOG_LEVEL="DEBUG",
        BRIDGE_KAFKA_DEBUG="security,broker,protocol",
    )
    good = json_values("o", 20)
    produce(broker, topic, [*good[:10], b"{not json", *good[10:]])
    process = start_bridge(env)

    wait_until(lambda: fake.stats().entries_accepted >= 20, 60, "20 entries delivered")
    dead = read_all(broker, f"{group}.dlq", expected=1, timeout=30)
    wait_until(lambda: process.metric("kafka_eventbridge_dead_letters_total") == 1, 30, "DLQ ack")
    assert process.terminate() == 0

    assert sorted(ids_of(e.detail for e in fake.entries())) == sorted(f"o-{i}" for i in range(20))
    assert [headers_of(m)["bridge.error.stage"] for m in dead] == [b"decode"]
    # The consumer and the dead-letter producer each fetched tokens for this client.
    assert len(provider.tokens_for(client.client_id)) >= 2
    log = process.log()
    assert "OAUTHBEARER" in log  # the debug path was taken
    assert client.secret not in log
    for token in provider.tokens[-20:]:
        assert token not in log
        assert token.rsplit(".", 1)[1] not in log  # not even the signature


def test_tokens_are_refreshed_and_sessions_reauthenticated(
    broker: OidcApacheKafkaBroker,
    provider: IdentityProvider,
    client: Client,
    fake: FakeEventBridge,
    start_bridge: StartBridge,
) -> None:
    """Tokens that live 10 s, sessions the broker ends after 8 s: records produced after
    several lifetimes still arrive, so the bridge fetched new tokens and logged in again."""
    lifetime = 10
    provider.token_lifetime_s = lifetime
    try:
        env, topic, _group = oidc_env(broker, client, fake.url)
        produce(broker, topic, json_values("a", 10))
        process = start_bridge(env)
        wait_until(lambda: fake.stats().entries_accepted >= 10, 60, "first 10 entries")
        first = len(provider.tokens_for(client.client_id))
        time.sleep(2.5 * lifetime)
        produce(broker, topic, json_values("b", 10))
        wait_until(lambda: fake.stats().entries_accepted >= 20, 60, "10 more entries")
        assert process.running
        assert process.terminate() == 0
    finally:
        provider.token_lifetime_s = 3600

    assert sorted(ids_of(e.detail for e in fake.entries())) == sorted(
        [f"a-{i}" for i in range(10)] + [f"b-{i}" for i in range(10)]
    )
    issued = provider.tokens_for(client.client_id)
    assert len(issued) >= first + 2, (first, len(issued))  # each client refreshed
    assert all(t["exp"] - t["iat"] == lifetime for t in issued)
    problems = [line for line in process.log_lines() if line.get("level") in ("error",)]
    assert not problems, problems


def test_a_wrong_client_secret_is_one_readable_fatal_error(
    broker: OidcApacheKafkaBroker,
    provider: IdentityProvider,
    client: Client,
    fake: FakeEventBridge,
    start_bridge: StartBridge,
) -> None:
    wrong = "client-secret-wrong-" + unique("x")
    env, _topic, _group = oidc_env(
        broker, client, fake.url, BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET=wrong
    )
    refused_before = provider.refused
    process = start_bridge(env)

    message = assert_one_fatal_line(
        process, "authentication", "invalid_client", "BRIDGE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET"
    )
    assert provider.refused > refused_before  # the identity provider said no, not the broker
    assert not provider.tokens_for(client.client_id)
    assert wrong not in process.log()
    assert "SASL_PASSWORD" not in message


def test_a_token_the_broker_cannot_verify_is_a_fatal_error(
    broker: OidcApacheKafkaBroker,
    provider: IdentityProvider,
    client: Client,
    fake: FakeEventBridge,
    start_bridge: StartBridge,
) -> None:
    """Signed with a key the JWKS does not publish: the broker refuses the login."""
    env, _topic, _group = oidc_env(broker, client, fake.url)
    provider.signing = SigningKey()
    try:
        process = start_bridge(env)
        assert_one_fatal_line(process, "authentication", "invalid_token")
    finally:
        provider.signing = provider.published
    assert provider.tokens_for(client.client_id)  # a token was issued, and refused


def test_check_logs_in_with_oidc_and_masks_the_client_secret(
    broker: OidcApacheKafkaBroker, client: Client, fake: FakeEventBridge
) -> None:
    env, topic, group = oidc_env(broker, client, fake.url)

    result = run_check(env)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ok   kafka brokers" in output
    assert f"ok   topic {topic}: exists" in output
    assert f"ok   dead-letter topic {group}.dlq" in output
    assert client.secret not in output
    assert broker.provider.token_url in output  # the endpoint is not a secret: it is shown
