"""Conformance with a third-party emulator: moto's EventBridge server.

What moto does differently from the service (and the bridge copes with): PutPartnerEvents
needs the partner event source to exist, answers ``Entries: []`` instead of one result
per entry, and forwards partner events to the *default* bus, where a rule with an SQS
target lets the test read them back. moto is slow with a rule (a few calls a second), so
these runs are small.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kafka_eventbridge_testing.moto import client, moto_server, partner_source, route_to_queue
from tests.integration.conftest import Scenario
from tests.integration.support import (
    PARTNER_SOURCE,
    json_values,
    produce,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def test_partner_events_reach_the_default_bus(scenario: Scenario, moto_url: str) -> None:
    read = partner_source(moto_url, PARTNER_SOURCE)
    name = scenario.topic(partitions=1)
    produce(scenario.broker, name, json_values("moto", 30))
    process = scenario.bridge(name, moto_url)
    wait_until(lambda: len(read()) >= 30, 90, "30 events in the queue", interval=0.5)
    wait_until(lambda: scenario.committed(name, 1)[0] == 30, 30, "commit")
    assert process.terminate() == 0
    events = read()
    assert sorted(e["detail"]["id"] for e in events) == sorted(f"moto-{i}" for i in range(30))
    assert {e["detail-type"] for e in events} == {"order.created"}
    assert {e["source"] for e in events} == {PARTNER_SOURCE}


def test_put_events_to_a_custom_bus(scenario: Scenario, moto_url: str) -> None:
    bus = f"orders{time.monotonic_ns()}"
    client("events", moto_url).create_event_bus(Name=bus)
    read = route_to_queue(moto_url, bus, {"source": ["acme.orders"]})
    name = scenario.topic(partitions=1)
    produce(scenario.broker, name, json_values("bus", 20))
    process = scenario.bridge(
        name,
        moto_url,
        BRIDGE_EVENTBRIDGE_API="events",
        BRIDGE_EVENTBRIDGE_EVENT_BUS=bus,
        BRIDGE_MAP_SOURCE="'acme.orders'",
        BRIDGE_MAP_RESOURCES="[join('', ['arn:aws:acme:::order/', value.id])]",
    )
    wait_until(lambda: len(read()) >= 20, 90, "20 events in the queue", interval=0.5)
    assert process.terminate() == 0
    events = read()
    assert sorted(e["detail"]["id"] for e in events) == sorted(f"bus-{i}" for i in range(20))
    assert all(e["resources"] == [f"arn:aws:acme:::order/{e['detail']['id']}"] for e in events)
