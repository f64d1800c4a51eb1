"""The delivery guarantee, checked over thousands of seeded schedules of the real loop.

``BRIDGE_SIM_SCHEDULES`` sets how many (default 2,000) and ``BRIDGE_SIM_SEED`` the first
seed (default: a fresh random one, printed); a failure prints the command that replays it.
The directed tests below drive the same world by hand, one defect each.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable

import pytest

from kafka_eventbridge.app import BACKPRESSURE_HOLD, REFILL_EVERY
from kafka_eventbridge.errors import FatalError
from kafka_eventbridge.offsets import PartitionId
from kafka_eventbridge.ports import Message
from kafka_eventbridge.publisher import Completion
from tests.simulation.mutants import MUTANTS
from tests.simulation.world import (
    FORBIDDEN,
    NORMAL,
    POISON,
    Faults,
    SimConsumer,
    SimPublisher,
    Simulation,
    Violation,
)

SCHEDULES = int(os.environ.get("BRIDGE_SIM_SCHEDULES", "2000"))
FIRST_SEED = int(os.environ.get("BRIDGE_SIM_SEED") or random.SystemRandom().randrange(10**9))
MUTANT_BUDGET = 300  # schedules within which each planted bug must be caught

TP: PartitionId = ("orders", 0)


def test_random_schedules_keep_every_invariant() -> None:
    print(f"\nsimulating {SCHEDULES} schedules from seed {FIRST_SEED} (BRIDGE_SIM_SEED)")
    for seed in range(FIRST_SEED, FIRST_SEED + SCHEDULES):
        Simulation(seed).run()  # raises Violation, with the replay command


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_simulator_catches_each_planted_bug(name: str) -> None:
    with MUTANTS[name]():
        for seed in range(FIRST_SEED, FIRST_SEED + MUTANT_BUDGET):
            try:
                Simulation(seed).run()
            except Violation:
                return
    pytest.fail(f"{name} went unnoticed through {MUTANT_BUDGET} schedules from {FIRST_SEED}")


# -- directed: one defect each ---------------------------------------------------------------


def directed(
    kinds: list[str], *, partitions: list[PartitionId] | None = None, **settings: str
) -> Simulation:
    env = {
        "BRIDGE_ORDERING": "none",
        "BRIDGE_MAX_BUFFERED_RECORDS": "1000",
        "BRIDGE_COMMIT_INTERVAL_MS": "10",
        "BRIDGE_RETRY_DEADLINE_SECONDS": "0",
        "BRIDGE_MAX_IN_FLIGHT_REQUESTS": "4",
        "BRIDGE_BATCH_MAX_ENTRIES": "10",
        "BRIDGE_BATCH_LINGER_MS": "0",
        "BRIDGE_CONSUME_BATCH_SIZE": "50",
        "BRIDGE_RETRY_BACKOFF_INITIAL_MS": "5",
        "BRIDGE_RETRY_BACKOFF_MAX_MS": "50",
        "BRIDGE_REVOKE_TIMEOUT_SECONDS": "5",
        "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS": "5",
        "BRIDGE_INVALID_RESPONSE_TIMEOUT_SECONDS": "60",
        "BRIDGE_MAX_ENTRIES_PER_SECOND": "0",
        **settings,
    }
    records = {tp: list(kinds) for tp in (partitions or [TP])}
    return Simulation(7, settings=env, records=records)


def turns_until(sim: Simulation, done: Callable[[], bool], limit: int = 5000) -> None:
    for _ in range(limit):
        if done():
            return
        sim.turn()
    pytest.fail("the condition was not reached")


def test_200_without_results_is_retried_then_fatal_naming_the_endpoint() -> None:
    sim = directed([NORMAL] * 5, BRIDGE_INVALID_RESPONSE_TIMEOUT_SECONDS="2")
    sim.faults = Faults(call_failure=1.0, call_modes=("empty-200",))
    bridge = sim.bridge
    with pytest.raises(FatalError) as fatal:
        for _ in range(100_000):
            bridge.step()
            sim.check_commits()
    assert fatal.value.code == "InvalidResponse"
    assert "https://events.sim" in fatal.value.message
    assert sim.clock.now >= 2.0  # retried for the whole timeout first
    assert sim.truth.committed.get(TP, 0) == 0
    assert bridge.metrics.invalid_responses._value.get() > 1


def test_a_failed_asynchronous_commit_is_retried_on_a_quiet_partition() -> None:
    sim = directed([NORMAL] * 20)
    sim.faults = Faults(commit_failure=1.0)
    turns_until(sim, lambda: len(sim.truth.accepted[TP]) == 20 and sim.clock.now > 1.0)
    assert sim.truth.committed.get(TP, 0) == 0  # nothing confirmed: nothing recorded
    sim.faults = Faults.calm()  # no new records: only a retried commit can move it
    turns_until(sim, lambda: sim.truth.committed.get(TP) == 20)


def test_a_rewind_behind_a_retrying_record_restarts_from_that_record() -> None:
    # 50 keeps failing, 51..99 are accepted; then the position goes back to 80.
    sim = directed([NORMAL] * 100, BRIDGE_BATCH_MAX_ENTRIES="1")
    sim.refused.add((TP, 50))
    turns_until(sim, lambda: len(sim.truth.accepted[TP]) == 99)
    assert sim.consumer is not None
    sim.consumer.positions[TP] = 80
    turns_until(sim, lambda: sim.consumer is not None and sim.consumer.positions[TP] == 100)
    for _ in range(200):
        sim.turn()  # every turn checks: nothing is committed past 50
    assert sim.truth.committed.get(TP, 0) <= 50
    assert sim.bridge.tracker.watermark(TP) == 50  # sought back to the unresolved record
    sim.refused.clear()
    turns_until(sim, lambda: sim.truth.committed.get(TP) == 100)


def test_ordering_holds_a_throttled_entry_in_its_lane() -> None:
    sim = directed([NORMAL] * 30, BRIDGE_ORDERING="partition", BRIDGE_BATCH_MAX_ENTRIES="3")
    sim.refused.add((TP, 4))
    turns_until(sim, lambda: sim.clock.now > 2.0)
    # Nothing after 4 is accepted for good while 4 is refused (check_order runs on every
    # acceptance); those behind it in its own request were sent again behind it.
    assert sim.truth.last_accepted[(1, TP, 1)] == 3
    sim.refused.clear()
    turns_until(sim, lambda: sim.truth.committed.get(TP) == 30)
    assert sim.truth.last_accepted[(1, TP, 1)] == 29


def test_ordering_waits_for_the_previous_assignments_request() -> None:
    sim = directed([NORMAL] * 30, BRIDGE_ORDERING="partition", BRIDGE_REVOKE_TIMEOUT_SECONDS="0")
    sim.faults = Faults(latency=(1.0, 1.0))
    turns_until(sim, lambda: sim.bridge.publisher.in_flight == 1)
    assert sim.consumer is not None
    sim.consumer.events.append(("revoke", [TP]))
    sim.consumer.events.append(("assign", [TP]))
    sim.faults = Faults.calm()
    # A second request of the partition before the first returns raises Violation.
    turns_until(sim, lambda: sim.truth.committed.get(TP) == 30)


@pytest.mark.parametrize(
    ("source", "fatal"),
    [("'aws.partner/acme.com/sim'", True), ("value.source", False)],
    ids=["constant source: fatal", "source from the record: dead letter"],
)
def test_a_refused_source_is_fatal_only_when_it_is_constant(source: str, fatal: bool) -> None:
    sim = directed([NORMAL, FORBIDDEN, NORMAL], BRIDGE_MAP_SOURCE=source)
    if fatal:
        with pytest.raises(FatalError, match="NotAuthorizedForSourceException"):
            for _ in range(1000):
                sim.bridge.step()
        return
    turns_until(sim, lambda: sim.truth.committed.get(TP) == 3)
    assert sim.truth.dead[TP] == {1}
    assert sim.truth.accepted[TP] == {0, 2}


def test_a_buffer_of_one_record_pauses_and_resumes() -> None:
    sim = directed([NORMAL] * 10, BRIDGE_MAX_BUFFERED_RECORDS="1", BRIDGE_CONSUME_BATCH_SIZE="1")
    turns_until(sim, lambda: sim.truth.committed.get(TP) == 10)


def at_the_bound(latency: float) -> tuple[Simulation, SimConsumer]:
    """A bridge that has just reached its buffer bound, behind an endpoint this slow."""
    sim = directed([NORMAL] * 400, BRIDGE_MAX_BUFFERED_RECORDS="100")
    sim.faults = Faults(latency=(latency, latency))
    assert sim.consumer is not None
    turns_until(sim, lambda: sim.bridge.backpressure)
    return sim, sim.consumer


def test_a_short_burst_over_the_bound_stops_consuming_without_pausing() -> None:
    # librdkafka drops a paused partition's prefetch and is slow to deliver after a resume:
    # a buffer that falls below the bound within BACKPRESSURE_HOLD is never paused.
    sim, consumer = at_the_bound(latency=0.2)
    bridge = sim.bridge
    consumed, held_at = consumer.positions[TP], sim.clock.now
    while bridge.backpressure:
        assert consumer.paused == set(), "paused for a burst"
        sim.turn()
    assert consumer.positions[TP] == consumed, "records were taken over the bound"
    assert sim.clock.now - held_at < BACKPRESSURE_HOLD
    turns_until(sim, lambda: sim.truth.committed.get(TP) == 400)


def test_a_bound_that_holds_longer_pauses_the_partitions_and_keeps_polling() -> None:
    sim, consumer = at_the_bound(latency=3.0)
    held_at = sim.clock.now
    turns_until(sim, lambda: consumer.paused == {TP})
    assert sim.clock.now - held_at >= BACKPRESSURE_HOLD
    # Paused, it polls again: a rebalance waits no longer than the hold.
    consumer.events.append(("revoke", [TP]))
    turns_until(sim, lambda: TP not in consumer.assignment)
    assert sim.clock.now - held_at < BACKPRESSURE_HOLD + 5 + 1  # + the revoke drain


def test_the_hold_counts_from_the_poll_not_from_the_end_of_a_slow_turn() -> None:
    # Mapping the turn that reaches the bound takes up to 0.5 s (500 records at 1 ms): a
    # hold counted from the end of that turn kept rebalance and commit callbacks waiting
    # longer than BACKPRESSURE_HOLD and a turn's wait for the next poll.
    sim = directed(
        [NORMAL] * 3000,
        BRIDGE_MAX_BUFFERED_RECORDS="1000",
        BRIDGE_CONSUME_BATCH_SIZE="500",
        BRIDGE_MAX_IN_FLIGHT_REQUESTS="1",
    )
    sim.faults = Faults(latency=(5.0, 5.0))
    sim.record_cost = 0.001
    consumer = sim.consumer
    assert consumer is not None
    turns_until(sim, lambda: consumer.paused == {TP})  # each turn checks the polling gap
    assert sim.bridge.backpressure


def test_a_revoked_partitions_permanent_failure_is_not_dead_lettered() -> None:
    sim = directed([POISON] + [NORMAL] * 3, BRIDGE_REVOKE_TIMEOUT_SECONDS="0")
    sim.faults = Faults(latency=(1.0, 1.0))
    turns_until(sim, lambda: sim.bridge.publisher.in_flight > 0)
    assert sim.consumer is not None
    sim.consumer.events.append(("revoke", [TP]))
    turns_until(sim, lambda: sim.bridge.publisher.in_flight == 0)
    # (SimDeadLetters.send raises Violation for a record of a revoked assignment.)
    assert sim.truth.dead_decided[TP] == set()


def test_draining_behind_the_rate_limit_waits_instead_of_spinning() -> None:
    sim = directed(
        [NORMAL] * 5,
        BRIDGE_MAX_ENTRIES_PER_SECOND="1",
        BRIDGE_BATCH_MAX_ENTRIES="1",
        BRIDGE_SHUTDOWN_TIMEOUT_SECONDS="30",
    )
    sim.turn()
    bridge, pumps = sim.bridge, 0
    real_pump = bridge.pump

    def pump(*args: object, **kwargs: object) -> None:
        nonlocal pumps
        pumps += 1
        assert pumps < 1000, "the drain spins"
        real_pump(*args, **kwargs)  # type: ignore[arg-type]

    bridge.pump = pump  # type: ignore[method-assign]
    bridge.stop()
    bridge.shutdown()
    # One entry a second: about one wake-up per entry sent, per completion, per commit.
    assert len(sim.truth.accepted[TP]) == 5
    assert sim.clock.now >= 4.0


def test_topics_that_go_away_take_their_series_and_caches_with_them() -> None:
    gone: PartitionId = ("payments", 0)
    sim = directed([NORMAL] * 3, partitions=[TP, gone])
    turns_until(sim, lambda: sim.truth.committed.get(gone) == 3)
    bridge = sim.bridge
    assert b'topic="payments"' in bridge.metrics.exposition()
    assert sim.consumer is not None
    sim.consumer.events.append(("revoke", [gone]))
    sim.turn()
    assert b'topic="payments"' not in bridge.metrics.exposition()
    assert b'topic="orders"' in bridge.metrics.exposition()
    assert "payments" not in bridge.mapper._by_topic
    assert all(topic != "payments" for _, topic in bridge._counters)


def test_a_freed_request_slot_is_refilled_before_the_next_records_are_mapped() -> None:
    # Every slot taken, records coming in faster than calls end: when a call ends, the next
    # one must go out (be flushed) from what is buffered before the records taken meanwhile
    # are mapped, or each call waits out a batch's mapping.
    sim = directed([NORMAL] * 2000, BRIDGE_MAX_BUFFERED_RECORDS="5000")
    sim._arrivals[TP] = [i * 0.001 for i in range(2000)]  # 1,000/s against 400/s sent
    sim.faults = Faults(latency=(0.1, 0.1))
    bridge, publisher = sim.bridge, sim.bridge.publisher
    assert isinstance(publisher, SimPublisher)
    events: list[str] = []
    real = (publisher.completions, publisher.flush, bridge.submit)

    def completions(timeout: float = 0.0) -> list[Completion]:
        done = real[0](timeout)
        if done and bridge.batcher.count:  # a slot is free and there is something to send
            events.append("ended")
        return done

    def flush() -> None:
        if publisher._queued:
            events.append("flushed")
        real[1]()

    def submit(message: Message, now: float) -> None:
        events.append("mapped")
        real[2](message, now)

    publisher.completions, publisher.flush = completions, flush  # type: ignore[method-assign]
    bridge.submit = submit  # type: ignore[method-assign]
    turns_until(sim, lambda: sim.clock.now > 1.5)
    ended = [i for i, event in enumerate(events) if event == "ended"]
    assert len(ended) > 20 and "mapped" in events[ended[-1] :]
    for i in ended:
        after = [event for event in events[i + 1 :] if event != "ended"]
        assert after[:1] != ["mapped"], f"records mapped before the freed slot was refilled: {i}"


def test_a_call_that_ends_while_records_are_mapped_is_taken_within_refill_every() -> None:
    # Mapping costs time: here 1 ms a record, 500 records a turn. A call that ends meanwhile
    # must be seen (and its slot refilled) within REFILL_EVERY records, not after the turn.
    sim = directed(
        [NORMAL] * 3000, BRIDGE_MAX_BUFFERED_RECORDS="5000", BRIDGE_CONSUME_BATCH_SIZE="500"
    )
    sim._arrivals[TP] = [i * 0.0002 for i in range(3000)]
    sim.faults = Faults(latency=(0.1, 0.1))
    bridge, publisher = sim.bridge, sim.bridge.publisher
    assert isinstance(publisher, SimPublisher)
    per_record = 0.001
    lags: list[float] = []
    real = (publisher.completions, bridge.submit)

    def completions(timeout: float = 0.0) -> list[Completion]:
        publisher.flush()
        due = {id(call.batch): call.due for call in publisher._calls}
        done = real[0](timeout)
        lags.extend(sim.clock.now - due[id(c.batch)] for c in done)
        return done

    def submit(message: Message, now: float) -> None:
        sim.clock.now += per_record
        real[1](message, now)

    publisher.completions = completions  # type: ignore[method-assign]
    bridge.submit = submit  # type: ignore[method-assign]
    turns_until(sim, lambda: sim.clock.now > 2.0)
    assert len(lags) > 10
    assert max(lags) <= REFILL_EVERY * per_record + 1e-9, max(lags)


def test_the_loop_never_hands_its_parts_a_time_before_one_it_gave_them() -> None:
    # Mapping costs time (1 ms a record) and calls end mid-turn while the rate limiter
    # blocks: a turn's later steps must not go back to the time the turn started, or the
    # limiter's wait (a counter) came out negative and the bridge crashed.
    sim = directed(
        [NORMAL] * 3000,
        BRIDGE_MAX_BUFFERED_RECORDS="5000",
        BRIDGE_CONSUME_BATCH_SIZE="500",
        BRIDGE_MAX_ENTRIES_PER_SECOND="38",
    )
    sim._arrivals[TP] = [i * 0.0002 for i in range(3000)]
    sim.faults = Faults(latency=(1.0, 1.0))
    sim.record_cost = 0.001
    limiter = sim.bridge.limiter
    seen: list[float] = []
    real = (limiter.ready, limiter.take_waited)

    def ready(now: float) -> bool:
        seen.append(now)
        return real[0](now)

    def take_waited(now: float) -> float:
        seen.append(now)
        waited = real[1](now)
        assert waited >= 0, waited
        return waited

    limiter.ready, limiter.take_waited = ready, take_waited  # type: ignore[method-assign]
    turns_until(sim, lambda: sim.clock.now > 10.0, limit=20_000)
    assert len(seen) > 100
    assert all(a <= b for a, b in itertools.pairwise(seen)), "time ran backwards"


@pytest.mark.parametrize("ahead", [False, True], ids=["behind", "producer-clock-ahead"])
def test_each_accepted_entry_is_observed_once_in_the_latency_histogram(
    ahead: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulated records carry CreateTimes from 1_767_225_600_000 ms on (SimMessage).
    wall = 1_767_225_600 + (-60.0 if ahead else 2.0)
    monkeypatch.setattr("kafka_eventbridge.app.time.time", lambda: wall)
    sim = directed([NORMAL] * 30)
    turns_until(sim, lambda: len(sim.truth.accepted[TP]) == 30)
    latency = sim.bridge.metrics.end_to_end_latency
    buckets = latency._counts  # [≤ first bound, …, above the last]
    assert sum(buckets) == 30
    if ahead:  # a producer's clock ahead of ours counts as no wait, never as negative
        assert buckets[0] == 30
        assert latency._sum == 0.0
    else:  # record N was created N ms after the first
        assert latency._sum == pytest.approx(sum(2.0 - n / 1000 for n in range(30)))
