"""The benchmark reads the calls' mean time from the bridge's own metrics endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks.bridge import publish_calls
from prometheus_client import start_http_server

from kafka_eventbridge.telemetry import Metrics
from kafka_eventbridge_testing import free_port


@pytest.fixture
def served() -> Iterator[tuple[Metrics, str]]:
    metrics = Metrics()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    try:
        yield metrics, str(port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_calls_and_their_seconds_are_summed_over_every_outcome(
    served: tuple[Metrics, str],
) -> None:
    metrics, port = served
    for seconds in (0.05, 0.06, 0.07):
        metrics.publish_duration.labels("success").observe(seconds)
    metrics.publish_duration.labels("error").observe(0.25)
    calls, seconds = publish_calls(port)
    assert calls == 4
    assert seconds == pytest.approx(0.43)


def test_a_bridge_that_made_no_call_counts_nothing(served: tuple[Metrics, str]) -> None:
    assert publish_calls(served[1]) == (0, 0.0)
