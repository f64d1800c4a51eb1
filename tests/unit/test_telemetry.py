"""Probes and metrics as Kubernetes and Prometheus read them."""

from __future__ import annotations

import re
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kafka_eventbridge.errors import Stage
from kafka_eventbridge.telemetry import DEPENDENCIES, Health, HttpServer, LoopHistogram, Metrics


def started() -> Health:
    health = Health(stall_seconds=60)
    health.start_done()
    return health


def test_not_live_nor_ready_while_starting() -> None:
    health = Health(stall_seconds=60)
    assert health.live() == (False, "starting")
    assert health.ready() == (False, "starting")


def test_ready_once_in_the_group_even_without_partitions() -> None:
    # A standby replica (an empty assignment under cooperative-sticky) is healthy capacity.
    health = started()
    assert health.ready() == (False, "joining the consumer group")
    health.joined()
    assert health.ready() == (True, "ok")
    assert health.live() == (True, "ok")


def test_unready_when_the_membership_is_lost_until_the_next_assignment() -> None:
    health = started()
    health.joined()
    health.left_group()
    assert not health.ready()[0]
    health.joined()
    assert health.ready()[0]


def test_unready_from_the_first_signal_on_and_after_a_fatal_error() -> None:
    health = started()
    health.joined()
    health.shutting_down()
    assert health.ready() == (False, "shutting down")
    assert health.live()[0], "draining is not a reason to be restarted"
    failed = started()
    failed.joined()
    failed.failed("AccessDeniedException")
    assert failed.ready() == (False, "fatal: AccessDeniedException")


def test_liveness_fails_when_the_loop_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    health = Health(stall_seconds=5)
    health.start_done()
    clock = [1000.0]
    monkeypatch.setattr("kafka_eventbridge.telemetry.time.monotonic", lambda: clock[0])
    health.beat()
    clock[0] += 6
    assert health.live() == (False, "main loop stalled for 6s")
    health.beat()
    assert health.live()[0]


def scrape(metrics: Metrics, health: Health) -> tuple[str, dict[str, int]]:
    server = HttpServer("127.0.0.1", 0, metrics, health)
    server.start()
    try:
        statuses = {}
        for path in ("/healthz", "/readyz"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}") as answer:
                    statuses[path] = answer.status
            except urllib.error.HTTPError as error:
                statuses[path] = error.code
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as answer:
            return answer.read().decode(), statuses
    finally:
        server.stop()


def samples(text: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in re.findall(r"^(\S+) (\S+)$", text, re.M)
        if not name.startswith("#")
    }


def test_ready_gauge_and_probes_agree_at_every_scrape() -> None:
    metrics, health = Metrics(), Health(stall_seconds=60)
    text, statuses = scrape(metrics, health)
    assert statuses == {"/healthz": 503, "/readyz": 503}
    assert samples(text)["kafka_eventbridge_ready"] == 0
    health.start_done()
    health.joined()
    text, statuses = scrape(metrics, health)
    assert statuses == {"/healthz": 200, "/readyz": 200}
    assert samples(text)["kafka_eventbridge_ready"] == 1


def test_labelled_counters_start_at_zero_for_known_values() -> None:
    # increase() over a series that appears at its first increment misses that increment.
    values = samples(scrape(Metrics(), started())[0])
    for stage in Stage:
        assert values[f'kafka_eventbridge_dead_letters_total{{stage="{stage}"}}'] == 0
    for outcome in ("success", "partial_failure", "error"):
        assert values[f'kafka_eventbridge_publish_requests_total{{outcome="{outcome}"}}'] == 0
        assert f'kafka_eventbridge_publish_duration_seconds_count{{outcome="{outcome}"}}' in values
    for reason in ("ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"):
        assert values[f'kafka_eventbridge_retries_total{{reason="{reason}"}}'] == 0
    for code in ("MalformedDetail", "ThrottlingException"):
        assert values[f'kafka_eventbridge_entry_failures_total{{code="{code}"}}'] == 0
    for result in ("success", "failure"):
        assert values[f'kafka_eventbridge_commits_total{{result="{result}"}}'] == 0
    for dependency in DEPENDENCIES:
        key = f'kafka_eventbridge_dependency_errors_total{{dependency="{dependency}"}}'
        assert values[key] == 0
    for reason in ("shutdown", "revoke"):
        assert values[f'kafka_eventbridge_records_abandoned_total{{reason="{reason}"}}'] == 0


def test_process_and_platform_collectors_are_exported() -> None:
    values = samples(scrape(Metrics(), started())[0])
    assert values["process_resident_memory_bytes"] > 0
    assert values["process_open_fds"] > 0
    assert "process_cpu_seconds_total" in values
    assert any(name.startswith("python_info{") for name in values)
    assert any(name.startswith("python_gc_collections_total{") for name in values)


def test_dependency_errors_count_by_peer() -> None:
    metrics = Metrics()
    metrics.dependency_error("s3_offload")
    metrics.dependency_error("s3_offload")
    values = samples(scrape(metrics, started())[0])
    assert values['kafka_eventbridge_dependency_errors_total{dependency="s3_offload"}'] == 2
    assert values['kafka_eventbridge_dependency_errors_total{dependency="schema_registry"}'] == 0


def test_per_topic_counters_start_at_zero_once_the_topic_is_assigned() -> None:
    metrics = Metrics()
    metrics.topics_assigned(["orders"])
    values = samples(scrape(metrics, started())[0])
    for name in ("records_consumed", "records_filtered", "entries_published"):
        assert values[f'kafka_eventbridge_{name}_total{{topic="orders"}}'] == 0


@pytest.mark.parametrize("at_once", [False, True], ids=["observe", "observe_all"])
def test_loop_histogram_exports_cumulative_buckets_count_and_sum(at_once: bool) -> None:
    registry = CollectorRegistry()
    histogram = LoopHistogram("demo_seconds", "A demo.", (0.1, 1, 2_000_000), registry)
    values = (0.05, 0.1, 0.5, 3, 5_000_000)
    if at_once:
        histogram.observe_all(values)
    else:
        for value in values:
            histogram.observe(value)

    def sample(suffix: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"demo_seconds{suffix}", labels)

    assert [sample("_bucket", le=le) for le in ("0.1", "1.0", "2e+06", "+Inf")] == [2, 3, 4, 5]
    assert sample("_count") == 5
    assert sample("_sum") == pytest.approx(5_000_003.65)
    assert b"# TYPE demo_seconds histogram" in generate_latest(registry)
