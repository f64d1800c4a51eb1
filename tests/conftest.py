"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kafka_eventbridge_testing.brokers import BrokerUnavailableError, KafkaBroker, create_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """The session's Kafka-compatible broker, of the kind ``BRIDGE_TEST_KAFKA`` names.

    One broker for the whole run: starting Apache Kafka costs seconds, and tests isolate
    themselves with their own topics and group ids instead. A run asked for a broker of a
    kind that cannot start here fails, with the reason: a run that named a broker and
    tested nothing must not pass.
    """
    broker = create_broker()
    try:
        broker.start()
    except BrokerUnavailableError as exc:
        pytest.fail(f"{broker.kind} Kafka broker unavailable: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()
