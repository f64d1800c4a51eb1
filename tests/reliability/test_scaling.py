"""Scaling 1 → 3 → 1 bridge processes in one consumer group while records keep arriving.

This is what an HPA or KEDA does to the Deployment. Every step is a rebalance with batches
in flight: on revoke a bridge gets a bounded time to finish the revoked partitions' work and
commits their watermark; what it could not finish is redelivered by the new owner.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence

import pytest

from kafka_eventbridge_testing.fake_eventbridge import Faults
from tests.integration.conftest import Scenario
from tests.integration.support import BridgeProcess, wait_until
from tests.reliability.harness import LoadProducer, Results, wait_all_committed

pytestmark = pytest.mark.reliability

PARTITIONS = 6
ASSIGNED = "kafka_eventbridge_assigned_partitions"
PUBLISHED = "kafka_eventbridge_entries_published_total"


@pytest.mark.timeout(300)
def test_scale_one_to_three_to_one_under_load_loses_nothing(
    scenario: Scenario, results: Results
) -> None:
    fake = scenario.fake
    fake.set_faults(Faults(latency_ms=20))  # batches in flight when partitions move
    name = scenario.topic(partitions=PARTITIONS)
    settle = scenario.broker.capabilities.group_settle_s * 3
    started = time.monotonic()
    load = LoadProducer(scenario.broker, name, "scale", 200_000, 1_000)
    load.start()

    first = scenario.bridge(name)
    first.wait_ready()
    wait_until(lambda: fake.stats().entries_accepted >= 2_000, 60, "entries flowing")

    extra = [scenario.bridge(name) for _ in range(2)]
    trio = [first, *extra]
    wait_until(lambda: _spread(trio), settle, "six partitions spread over three bridges")
    wait_until(lambda: all(p.metric(PUBLISHED) > 0 for p in extra), 60, "all three publishing")
    time.sleep(5)  # three bridges at work for a while, so the scale-down meets batches in flight
    scaled_up = time.monotonic() - started

    assert _terminate_all(extra) == [0, 0]
    wait_until(lambda: first.metric(ASSIGNED) == PARTITIONS, settle, "one bridge with all six")
    load.stop()
    produced = load.finish()
    wait_all_committed(scenario, name, PARTITIONS, len(produced), timeout=120)
    rebalances = first.metrics()
    assert first.terminate() == 0

    figures = results.count(
        "scale 1 -> 3 -> 1 under load",
        scenario,
        produced,
        started,
        three_bridges_after_s=round(scaled_up, 1),
        first_bridge_rebalance_events={
            key.split('"')[1]: int(value)
            for key, value in rebalances.items()
            if key.startswith("kafka_eventbridge_rebalances_total{")
        },
    )
    assert figures.lost == 0
    assert figures.dead_lettered == 0


def _spread(processes: Sequence[BridgeProcess]) -> bool:
    counts = [p.metric(ASSIGNED) for p in processes]
    return sum(counts) == PARTITIONS and all(c > 0 for c in counts)


def _terminate_all(processes: Sequence[BridgeProcess]) -> list[int]:
    """SIGTERM to all at once (a scale-down stops pods together), then their exit codes."""
    for process in processes:
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
    return [process.wait(60) for process in processes]
