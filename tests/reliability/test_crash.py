"""kill -9 of the bridge at random moments while records keep arriving, and a bridge frozen
past its session.

SIGKILL gives the bridge no chance to drain, commit or leave the group: whatever it had
published but not yet committed is redelivered by the next process. That may duplicate
entries, never lose one: the committed offset only ever passes records that are resolved.
A frozen bridge (SIGSTOP: a stalled node, a paused container) is dropped from the group by the
broker; when it runs again it finds its partitions lost, forgets what they held and joins
again, in the same process.
"""

from __future__ import annotations

import time

import pytest

from kafka_eventbridge_testing.brokers import SESSION_TIMEOUT_MS
from kafka_eventbridge_testing.fake_eventbridge import Faults
from tests.integration.conftest import Scenario
from tests.integration.support import wait_until
from tests.reliability.harness import (
    LoadProducer,
    Results,
    SeededRandom,
    delivered_ids,
    wait_all_committed,
)

pytestmark = pytest.mark.reliability

CYCLES = 5
PARTITIONS = 4
RECORDS = 100_000  # at most: production stops after the last kill
RATE = 500  # records a second
MAX_BUFFERED = 2_000
CONSUME_BATCH = 500
COMMIT_INTERVAL_S = 0.2  # tests.integration.support's bridge settings
# The bridge's own pace, well above the producer's, so each restart catches up in seconds.
MAX_ENTRIES_PER_SECOND = 2_000
# What one kill can redeliver: everything fetched since the last commit the broker confirmed.
# Unresolved records are bounded by the buffer (plus the consume batch that crossed it);
# resolved ones by the pace times the age of that commit, at most two intervals (one commit
# may be on its way when the kill lands).
REDELIVERED_PER_KILL = (
    MAX_BUFFERED + CONSUME_BATCH + int(MAX_ENTRIES_PER_SECOND * 2 * COMMIT_INTERVAL_S)
)
SETTINGS = {
    "BRIDGE_MAX_BUFFERED_RECORDS": str(MAX_BUFFERED),
    "BRIDGE_CONSUME_BATCH_SIZE": str(CONSUME_BATCH),
    "BRIDGE_MAX_ENTRIES_PER_SECOND": str(MAX_ENTRIES_PER_SECOND),
}
# Twice the session timeout: the broker has dropped the member well before it runs again.
FROZEN_S = 2 * SESSION_TIMEOUT_MS / 1000
FROZEN_RECORDS = 15_000  # 30 s of load at RATE: before, during and after the freeze


def test_kill_9_at_random_moments_under_load_loses_nothing(
    scenario: Scenario, results: Results, rng: SeededRandom
) -> None:
    fake, broker = scenario.fake, scenario.broker
    # A little latency, so that batches are in flight when the kill lands.
    fake.set_faults(Faults(latency_ms=20))
    name = scenario.topic(partitions=PARTITIONS)
    started = time.monotonic()
    load = LoadProducer(broker, name, "kill", RECORDS, RATE)
    load.start()

    delays = []
    for _ in range(CYCLES):
        process = scenario.bridge(name, **SETTINGS)
        # After a SIGKILL the group waits out the dead member's session before it assigns.
        process.wait_ready(broker.capabilities.group_settle_s * 2)
        delays.append(round(rng.uniform(0.2, 3.0), 2))
        time.sleep(delays[-1])
        assert process.running, f"the bridge exited on its own:\n{process.log()[-3000:]}"
        process.kill()
    load.stop()
    produced = load.finish()
    killed_at = len(set(delivered_ids(fake)))

    final = scenario.bridge(name, **SETTINGS)
    final.wait_ready(broker.capabilities.group_settle_s * 2)
    wait_all_committed(
        scenario, name, PARTITIONS, len(produced), what="the clean run to commit every record"
    )
    assert final.terminate() == 0

    figures = results.count(
        "kill -9 x5 under load",
        scenario,
        produced,
        started,
        kills=CYCLES,
        kill_delays_s=delays,
        seed=rng.initial_seed,
        delivered_before_clean_run=killed_at,
    )
    assert 0 < killed_at < len(produced), "the kills should land mid-stream"
    assert figures.lost == 0
    assert figures.dead_lettered == 0
    assert figures.duplicates <= CYCLES * REDELIVERED_PER_KILL


def test_a_bridge_frozen_past_its_session_rejoins_and_loses_nothing(
    scenario: Scenario, results: Results
) -> None:
    fake, broker = scenario.fake, scenario.broker
    fake.set_faults(Faults(latency_ms=20))  # calls in flight when the freeze lands
    name = scenario.topic(partitions=PARTITIONS)
    started = time.monotonic()
    load = LoadProducer(broker, name, "frozen", FROZEN_RECORDS, RATE)
    load.start()
    process = scenario.bridge(name, **SETTINGS)
    process.wait_ready(broker.capabilities.group_settle_s * 2)
    wait_until(lambda: fake.stats().entries_accepted >= 1_000, 60, "entries flowing")
    with process.frozen():
        time.sleep(FROZEN_S)
    produced = load.finish()
    wait_all_committed(
        scenario, name, PARTITIONS, len(produced), what="every record committed after the freeze"
    )
    assert process.running, f"the bridge exited after the freeze:\n{process.log()[-3000:]}"
    lost = [line for line in process.log_lines() if line.get("message") == "partitions lost"]
    assert process.terminate() == 0

    figures = results.count(
        "frozen past the session", scenario, produced, started, frozen_s=FROZEN_S
    )
    assert lost, "the broker should have dropped the frozen member from the group"
    assert figures.lost == 0
    assert figures.dead_lettered == 0
