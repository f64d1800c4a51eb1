"""The bridge end to end: a real broker, real boto3 calls, the process as users run it."""

from __future__ import annotations

import signal
from collections import Counter

import orjson
import pytest

from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge, Faults
from tests.integration.conftest import Scenario
from tests.integration.support import (
    BridgeProcess,
    end_offsets,
    headers_of,
    ids_of,
    json_values,
    produce,
    read_all,
    wait_until,
)

pytestmark = pytest.mark.integration


def delivered_ids(fake: FakeEventBridge) -> list[str]:
    return ids_of(entry.detail for entry in fake.entries())


def test_ten_thousand_records_delivered_exactly_once_and_committed(
    scenario: Scenario,
) -> None:
    name = scenario.topic(partitions=4)
    produce(scenario.broker, name, json_values("r", 10_000))
    process = scenario.bridge(name)
    wait_until(
        lambda: scenario.fake.stats().entries_accepted >= 10_000, 120, "10k entries accepted"
    )
    wait_until(lambda: scenario.total_committed(name, 4) == 10_000, 30, "commits")
    assert process.terminate() == 0
    ids = delivered_ids(scenario.fake)
    assert len(ids) == 10_000
    assert len(set(ids)) == 10_000  # no duplicates on a clean run
    entry = scenario.fake.entries(limit=1)[0].entry
    assert entry["Source"] == "aws.partner/example.com/orders"
    assert entry["DetailType"] == "order.created"
    assert "Time" in entry  # the record timestamp


def test_throttled_entries_are_retried_until_delivered(
    scenario: Scenario,
) -> None:
    scenario.fake.set_faults(Faults(entry_failure_rates={"ThrottlingException": 0.3}, seed=7))
    name = scenario.topic()
    produce(scenario.broker, name, json_values("t", 2_000))
    process = scenario.bridge(name, BRIDGE_RETRY_BACKOFF_INITIAL_MS="20")
    wait_until(
        lambda: len(set(delivered_ids(scenario.fake))) >= 2_000, 120, "all entries delivered"
    )
    wait_until(lambda: scenario.total_committed(name, 3) == 2_000, 30, "commits")
    assert process.metric("kafka_eventbridge_retries_total") > 0
    assert process.metric("kafka_eventbridge_entry_failures_total") > 0
    assert process.terminate() == 0
    assert scenario.fake.stats().entries_failed.get("ThrottlingException", 0) > 0
    assert read_all(scenario.broker, scenario.dlq, expected=1, timeout=3) == []


def test_bad_records_and_permanent_failures_are_dead_lettered_with_headers(
    scenario: Scenario,
) -> None:
    name = scenario.topic(partitions=1)
    good = json_values("g", 20)
    values = [
        *good[:10],
        b"{not json",
        b"[1, 2, 3]",
        orjson.dumps({"id": "x", "type": "t" * 200}),
        orjson.dumps({"id": "perm", "type": "order.created", "__fail": "MalformedDetail"}),
        *good[10:],
    ]
    produce(scenario.broker, name, values, headers=[("trace-id", b"abc")])
    process = scenario.bridge(name)
    dead = read_all(scenario.broker, scenario.dlq, expected=4, timeout=60)
    wait_until(lambda: scenario.committed(name, 1)[0] == len(values), 30, "commit")
    assert process.terminate() == 0

    assert sorted(delivered_ids(scenario.fake)) == sorted(ids_of(orjson.loads(v) for v in good))
    by_offset = {int(headers_of(m)["bridge.source.offset"] or 0): m for m in dead}
    assert sorted(by_offset) == [10, 11, 12, 13]
    expected = {
        10: (b"decode", b"InvalidJson"),
        11: (b"validate", b"DetailNotObject"),
        12: (b"validate", b"DetailTypeTooLong"),
        13: (b"publish", b"MalformedDetail"),
    }
    for offset, (stage, code) in expected.items():
        message = by_offset[offset]
        headers = headers_of(message)
        assert message.value() == values[offset]  # byte for byte
        assert message.key() == str(offset + 1).encode()
        assert headers["trace-id"] == b"abc"  # original headers kept
        assert headers["bridge.error.stage"] == stage
        assert headers["bridge.error.code"] == code
        assert headers["bridge.error.message"]
        assert headers["bridge.source.topic"] == name.encode()
        assert headers["bridge.source.partition"] == b"0"
        assert headers["bridge.attempts"] == (b"1" if stage == b"publish" else b"0")


def test_access_denied_is_fatal_and_commits_nothing(
    scenario: Scenario,
) -> None:
    scenario.fake.set_faults(Faults(deny=True))
    name = scenario.topic()
    produce(scenario.broker, name, json_values("d", 300))
    process = scenario.bridge(name)
    code = process.wait(60)
    assert code != 0
    assert scenario.total_committed(name, 3) == 0
    assert read_all(scenario.broker, scenario.dlq, expected=1, timeout=3) == []
    fatal = [line for line in process.log_lines() if line.get("level") == "error"]
    assert len(fatal) == 1
    assert "AccessDeniedException" in fatal[0]["message"]


def test_sigterm_drains_commits_and_a_restart_resumes_without_loss(
    scenario: Scenario,
) -> None:
    scenario.fake.set_faults(Faults(latency_ms=30))
    name = scenario.topic()
    total = 6_000
    produce(scenario.broker, name, json_values("s", total))
    # A small buffer, so that the drain on SIGTERM covers only part of the backlog.
    first = scenario.bridge(
        name,
        BRIDGE_MAX_IN_FLIGHT_REQUESTS="2",
        BRIDGE_MAX_BUFFERED_RECORDS="300",
        BRIDGE_CONSUME_BATCH_SIZE="100",
    )
    wait_until(lambda: scenario.fake.stats().entries_accepted >= 1_000, 60, "some entries accepted")
    assert first.terminate() == 0  # mid-stream
    accepted = set(delivered_ids(scenario.fake))
    marks = scenario.committed(name, 3)
    assert 0 < sum(marks.values()) < total
    # Everything below each committed offset was delivered (the drain committed it all).
    assert sum(marks.values()) <= len(accepted)

    second = scenario.bridge(name)
    wait_until(lambda: len(set(delivered_ids(scenario.fake))) >= total, 120, "the rest delivered")
    wait_until(lambda: scenario.total_committed(name, 3) == total, 30, "commits")
    assert second.terminate() == 0
    ids = delivered_ids(scenario.fake)
    assert set(ids) == {f"s-{i}" for i in range(total)}
    duplicates = sum(c - 1 for c in Counter(ids).values())
    assert duplicates == 0  # a drained stop leaves nothing to redeliver


def wait_split(scenario: Scenario, one: BridgeProcess, two: BridgeProcess) -> None:
    """Both bridges ready, and the group's four partitions split two and two."""
    one.wait_ready()
    two.wait_ready()

    def split() -> bool:
        counts = (
            one.metric("kafka_eventbridge_assigned_partitions"),
            two.metric("kafka_eventbridge_assigned_partitions"),
        )
        return counts == (2.0, 2.0)

    wait_until(split, scenario.broker.capabilities.group_settle_s * 2, "two partitions each")


def test_two_bridges_in_one_group_split_the_partitions(
    scenario: Scenario,
) -> None:
    name = scenario.topic(partitions=4)
    one = scenario.bridge(name)
    two = scenario.bridge(name)
    wait_split(scenario, one, two)
    produce(scenario.broker, name, json_values("p", 2_000))
    wait_until(lambda: len(set(delivered_ids(scenario.fake))) >= 2_000, 60, "all delivered")
    assert one.metric("kafka_eventbridge_entries_published_total") > 0
    assert two.metric("kafka_eventbridge_entries_published_total") > 0
    assert one.terminate() == 0
    assert two.terminate() == 0
    ends = end_offsets(scenario.broker, name, 4)
    assert sum(ends.values()) == 2_000
    assert scenario.committed(name, 4) == ends  # per partition, to name the one behind


def test_a_rebalance_during_the_shutdown_drain_is_served_before_leaving(
    scenario: Scenario,
) -> None:
    # A rolling restart: one replica leaves while the other still drains its calls. The
    # rebalance that follows is served by that drain (its new partitions join paused), not
    # left to librdkafka's close, where the revoke's commit was refused (UNKNOWN_MEMBER_ID)
    # and the close could hang holding the interpreter, or abort.
    name = scenario.topic(partitions=4)
    with FakeEventBridge() as slow:
        latency_s = 8.0
        slow.set_faults(Faults(latency_ms=latency_s * 1000))
        quick = scenario.bridge(name)
        draining = scenario.bridge(name, endpoint=slow.url)
        wait_split(scenario, quick, draining)
        total = produce(scenario.broker, name, json_values("r", 400))
        wait_until(lambda: len(set(delivered_ids(scenario.fake))) >= total // 4, 30, "quick's")
        wait_until(
            lambda: draining.metric("kafka_eventbridge_in_flight_requests") > 0,
            30,
            "a slow call in flight",
        )
        assert draining.process is not None
        draining.process.send_signal(signal.SIGTERM)
        assert quick.terminate() == 0  # it leaves the group while the other drains
        assert draining.wait(latency_s * 4) == 0

    lines = draining.log_lines()
    events = [line["message"] for line in lines]
    stopped = events.index("stopped")
    assert "partitions assigned" in events[events.index("signal received, draining") : stopped]
    warnings = [line for line in lines if line["level"] == "warning"]
    assert warnings == []
    delivered = set(delivered_ids(scenario.fake)) | set(delivered_ids(slow))
    assert delivered == {f"r-{i}" for i in range(total)}
    assert scenario.total_committed(name, 4) == total


def test_health_readiness_and_metrics_endpoints(
    scenario: Scenario,
) -> None:
    name = scenario.topic()
    process = scenario.bridge(name)
    process.wait_ready()
    assert process.get("/healthz")[0] == 200
    produce(scenario.broker, name, json_values("m", 100))
    wait_until(
        lambda: process.metric("kafka_eventbridge_entries_published_total") == 100, 30, "metrics"
    )
    # The commit counter appears with the first commit, up to BRIDGE_COMMIT_INTERVAL_MS later.
    wait_until(lambda: process.metric("kafka_eventbridge_commits_total") > 0, 10, "a commit")
    names = {key.split("{")[0] for key in process.metrics()}
    for expected in (
        "kafka_eventbridge_records_consumed_total",
        "kafka_eventbridge_publish_requests_total",
        "kafka_eventbridge_publish_duration_seconds_bucket",
        "kafka_eventbridge_batch_entries_bucket",
        "kafka_eventbridge_buffered_records",
        "kafka_eventbridge_commits_total",
        "kafka_eventbridge_rebalances_total",
    ):
        assert expected in names
    wait_until(
        lambda: any(
            k.startswith("kafka_eventbridge_consumer_lag_records") for k in process.metrics()
        ),
        15,
        "lag gauge",
    )
    assert process.terminate() == 0


def test_a_bad_mapping_deploy_trips_the_dead_letter_guard(
    scenario: Scenario,
) -> None:
    name = scenario.topic(partitions=1)
    produce(scenario.broker, name, json_values("bad", 400))
    # Every record maps to a DetailType that does not exist: the mapping, not the data, is wrong.
    process = scenario.bridge(
        name,
        BRIDGE_MAP_DETAIL_TYPE="value.no_such_field",
        BRIDGE_DLQ_RATIO_WINDOW="100",
        BRIDGE_DLQ_MAX_RATIO="0.5",
    )
    assert process.wait(60) == 1
    errors = [line for line in process.log_lines() if line.get("level") == "error"]
    assert len(errors) == 1
    assert "DeadLetterRatioExceeded" in errors[0]["message"]
    # It stopped early instead of dead-lettering the whole stream.
    assert scenario.committed(name, 1)[0] < 400


def test_retry_deadline_turns_endless_throttling_into_dead_letters(
    scenario: Scenario,
) -> None:
    scenario.fake.set_faults(Faults(entry_failure_rates={"ThrottlingException": 1.0}))
    name = scenario.topic(partitions=1)
    produce(scenario.broker, name, json_values("late", 30))
    process = scenario.bridge(
        name,
        BRIDGE_RETRY_DEADLINE_SECONDS="2",
        BRIDGE_RETRY_BACKOFF_INITIAL_MS="50",
        BRIDGE_RETRY_BACKOFF_MAX_MS="200",
    )
    dead = read_all(scenario.broker, scenario.dlq, expected=30, timeout=60)
    wait_until(lambda: scenario.committed(name, 1)[0] == 30, 30, "commit")
    assert process.terminate() == 0
    assert len(dead) == 30
    for message in dead:
        headers = headers_of(message)
        assert headers["bridge.error.stage"] == b"retries-exhausted"
        assert headers["bridge.error.code"] == b"ThrottlingException"
        assert int(headers["bridge.attempts"] or 0) > 1


def slowest_call_within(process: BridgeProcess) -> float:
    """A bound on every call's duration so far, from send to answer: the lowest bucket of
    ``kafka_eventbridge_publish_duration_seconds`` that holds them all."""
    buckets: dict[float, float] = {}
    for name, count in process.metrics().items():
        if name.startswith("kafka_eventbridge_publish_duration_seconds_bucket{"):
            bound = float(name.split('le="', 1)[1].split('"', 1)[0])
            buckets[bound] = buckets.get(bound, 0.0) + count
    total = buckets[float("inf")]
    return min(bound for bound, count in buckets.items() if count == total)


def test_rate_limit_caps_entries_per_second(
    scenario: Scenario,
) -> None:
    name = scenario.topic()
    count, rate, batch = 1_200, 300, 20
    produce(scenario.broker, name, json_values("rl", count))
    process = scenario.bridge(name, BRIDGE_MAX_ENTRIES_PER_SECOND=str(rate))
    wait_until(lambda: scenario.fake.stats().entries_accepted >= count, 60, "all delivered")
    # The limit holds when calls are sent; the stand-in sees them up to one call's duration
    # later, so a second of its clock holds calls sent over a second and that much.
    late = slowest_call_within(process)
    assert process.terminate() == 0
    times = sorted(entry.received_at for entry in scenario.fake.entries())
    # Sent in any one second: the bucket's burst (the rate), the rate, and less than a batch
    # of debt.
    busiest = max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))
    assert busiest <= rate + rate * (1 + late) + batch, (busiest, late)
    # The last call cannot leave before the bucket has refilled all but the burst and one
    # batch. The loop reads its clock once a turn, before it maps the turn's records, so the
    # first call may leave up to a turn after the time the limiter was given: that is allowed
    # as one batch more (67 ms at this rate; a 500-record turn maps in 5-11 ms here).
    assert times[-1] - times[0] >= (count - rate - 2 * batch) / rate - late, late


def test_put_events_to_a_global_endpoint_is_signed_with_sigv4a(
    scenario: Scenario,
) -> None:
    name = scenario.topic(partitions=1)
    produce(scenario.broker, name, json_values("g", 30))
    process = scenario.bridge(
        name,
        BRIDGE_EVENTBRIDGE_API="events",
        BRIDGE_EVENTBRIDGE_ENDPOINT_ID="abcde.veo",
        BRIDGE_MAP_SOURCE="'acme.orders'",
    )
    wait_until(lambda: scenario.fake.stats().entries_accepted >= 30, 60, "entries accepted")
    assert process.terminate() == 0
    stats = scenario.fake.stats()
    assert stats.endpoint_ids == {"abcde.veo": stats.calls_total}
    assert set(stats.auth_schemes) == {"AWS4-ECDSA-P256-SHA256"}
