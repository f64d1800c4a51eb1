"""EventBridge misbehaving while records keep arriving: everything is still delivered.

Each fault is retryable (DESIGN.md, "Semantics" 2): throttled entries inside a 200, whole
calls failing with a 5xx, connections reset with no answer, a slow service, and an outage
in which connections are refused. None of them may dead-letter a record or lose one; the
bridge retries only what failed, with backoff, forever by default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge, Faults
from tests.integration.conftest import Scenario
from tests.integration.support import BridgeProcess, wait_until
from tests.reliability.harness import LoadProducer, Results, wait_all_committed

pytestmark = pytest.mark.reliability

PARTITIONS = 4


@dataclass(frozen=True)
class FaultCase:
    name: str
    faults: Faults
    records: int = 6_000
    rate: float = 1_500
    outage_s: float = 0.0  # connections refused for this long, a few seconds into the run


CASES = [
    FaultCase("30% of entries throttled", Faults(entry_failure_rates={"ThrottlingException": 0.3})),
    FaultCase("10% of calls fail with a 500", Faults(call_error_rate=0.1)),
    FaultCase("10% of connections reset", Faults(reset_rate=0.1)),
    FaultCase("50 ms latency", Faults(latency_ms=50)),
    FaultCase(
        "all of them at once",
        Faults(
            latency_ms=50,
            entry_failure_rates={"ThrottlingException": 0.3},
            call_error_rate=0.1,
            reset_rate=0.05,
        ),
    ),
    FaultCase("30 s outage mid-run", Faults(latency_ms=5), records=15_000, rate=400, outage_s=30),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_retryable_faults_deliver_everything_and_dead_letter_nothing(
    case: FaultCase, scenario: Scenario, results: Results
) -> None:
    fake = scenario.fake
    fake.set_faults(case.faults)
    name = scenario.topic(partitions=PARTITIONS)
    started = time.monotonic()
    load = LoadProducer(scenario.broker, name, "f", case.records, case.rate)
    load.start()
    process = scenario.bridge(name, BRIDGE_RETRY_BACKOFF_INITIAL_MS="20")
    if case.outage_s:
        _outage(fake, process, case.outage_s)
    produced = load.finish()
    wait_all_committed(scenario, name, PARTITIONS, len(produced), timeout=120)
    retries = process.metric("kafka_eventbridge_retries_total")
    assert process.terminate() == 0

    figures = results.count(
        f"EventBridge fault: {case.name}",
        scenario,
        produced,
        started,
        retries=int(retries),
        calls=fake.stats().calls_by_outcome,
    )
    assert figures.lost == 0
    assert figures.dead_lettered == 0
    if case.faults != Faults(latency_ms=case.faults.latency_ms):
        assert retries > 0, "the faults should have made the bridge retry"


def _outage(fake: FakeEventBridge, process: BridgeProcess, seconds: float) -> None:
    """Refuse connections for ``seconds`` once entries flow; the bridge must sit it out."""
    wait_until(lambda: fake.stats().entries_accepted >= 500, 60, "entries flowing")
    fake.outage()
    try:
        before = fake.stats().entries_accepted
        time.sleep(seconds)
        assert process.running, f"the bridge gave up during the outage:\n{process.log()[-3000:]}"
        assert fake.stats().entries_accepted == before
    finally:
        fake.recover()
