"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kafka_eventbridge_testing.brokers import (
    ENV_KIND,
    BrokerUnavailableError,
    KafkaBroker,
    create_broker,
)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """The session's Kafka-compatible broker, of the kind ``BRIDGE_TEST_KAFKA`` names.

    One broker for the whole run: starting Apache Kafka costs seconds, and tests isolate
    themselves with their own topics and group ids instead. A kind named in
    ``BRIDGE_TEST_KAFKA`` (as CI names them) that cannot start fails the tests that need it: a
    run asked for that peer. Only the default kind, unasked for, skips with the reason.
    """
    broker = create_broker()
    try:
        broker.start()
    except BrokerUnavailableError as exc:
        message = f"{broker.kind} Kafka broker unavailable: {exc}"
        if os.environ.get(ENV_KIND, "").strip():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield broker
    finally:
        broker.stop()
