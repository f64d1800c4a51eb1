"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kafka_eventbridge_testing.brokers import BrokerUnavailableError, KafkaBroker, create_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """The session's Kafka-compatible broker, of the kind ``BRIDGE_TEST_KAFKA`` names.

    One broker for the whole run: starting Apache Kafka costs seconds, and tests isolate
    themselves with their own topics and group ids instead. A kind that cannot run on this
    machine (no Docker engine, no Java, no address given) skips the tests that need a broker,
    with the reason, rather than failing them.
    """
    broker = create_broker()
    try:
        broker.start()
    except BrokerUnavailableError as exc:
        pytest.skip(f"{broker.kind} Kafka broker unavailable: {exc}")
    try:
        yield broker
    finally:
        broker.stop()
