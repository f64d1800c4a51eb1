"""What on-call relies on: readiness by group membership, off from SIGTERM; a group-wide
rate budget that holds whatever the replica count."""

from __future__ import annotations

import signal

import pytest

from tests.integration.conftest import Scenario
from tests.integration.support import json_values, produce, wait_until

pytestmark = pytest.mark.integration

ASSIGNED = "kafka_eventbridge_assigned_partitions"


def test_a_standby_replica_without_partitions_is_ready(scenario: Scenario) -> None:
    topic = scenario.topic(partitions=1)
    first = scenario.bridge(topic)
    first.wait_ready()
    wait_until(lambda: first.metric(ASSIGNED) == 1, 30, "the first bridge owns the partition")
    standby = scenario.bridge(topic)
    standby.wait_ready(scenario.broker.capabilities.group_settle_s * 2)
    settle = scenario.broker.capabilities.group_settle_s * 2
    wait_until(
        lambda: (
            first.metric(ASSIGNED) + standby.metric(ASSIGNED) == 1
            and standby.metric("kafka_eventbridge_rebalances_total") > 0
        ),
        settle,
        "the group settled with one partition between two bridges",
    )
    idle = first if first.metric(ASSIGNED) == 0 else standby
    assert idle.get("/readyz") == (200, "ok\n")
    assert idle.metric("kafka_eventbridge_ready") == 1
    assert first.terminate() == 0
    assert standby.terminate() == 0


def test_unready_from_sigterm_on_while_the_drain_runs(scenario: Scenario) -> None:
    topic = scenario.topic(partitions=1)
    produce(scenario.broker, topic, json_values("d", 10))
    scenario.fake.update_faults(latency_ms=600_000)  # nothing resolves: the drain takes its time
    process = scenario.bridge(
        topic, BRIDGE_SHUTDOWN_TIMEOUT_SECONDS="5", BRIDGE_EVENTBRIDGE_READ_TIMEOUT_SECONDS="2"
    )
    process.wait_ready()
    wait_until(
        lambda: process.metric("kafka_eventbridge_buffered_records") == 10, 30, "records held"
    )
    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)
    wait_until(lambda: process.get("/readyz")[0] == 503, 5, "unready after SIGTERM")
    assert process.get("/readyz") == (503, "shutting down\n")
    assert process.get("/healthz")[0] == 200, "draining is no reason for a restart"
    assert process.wait(30) == 0


def test_a_group_rate_budget_is_shared_by_the_replicas(scenario: Scenario) -> None:
    """BRIDGE_GROUP_MAX_ENTRIES_PER_SECOND caps the group, whatever its replica count: two
    bridges send at the budget together, not at twice it (which a per-process limit would)."""
    topic = scenario.topic(partitions=4)
    budget, records = 300, 4_800
    settings = {
        "BRIDGE_GROUP_MAX_ENTRIES_PER_SECOND": str(budget),
        "BRIDGE_LAG_INTERVAL_SECONDS": "1",
    }
    bridges = [scenario.bridge(topic, **settings) for _ in range(2)]
    settle = scenario.broker.capabilities.group_settle_s * 2
    wait_until(
        lambda: [b.metric(ASSIGNED) for b in bridges] in ([1, 3], [2, 2], [3, 1]),
        settle,
        "four partitions spread over two bridges",
    )
    wait_until(
        lambda: (
            sum(b.metric("kafka_eventbridge_rate_limit_entries_per_second") for b in bridges)
            == budget
        ),
        15,
        "the shares add up to the budget",
    )
    produce(scenario.broker, topic, json_values("budget", records))
    wait_until(lambda: scenario.fake.stats().entries_accepted >= records, 90, "all delivered")
    times = sorted(entry.received_at for entry in scenario.fake.entries())
    # Each bridge may start with a full bucket (a second of its share): the rest goes at the
    # budget, for the group as a whole.
    assert times[-1] - times[0] >= (records - budget) / budget * 0.9
    for process in bridges:
        assert process.terminate() == 0
