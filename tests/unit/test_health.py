"""The probes as Kubernetes sees them: HTTP status codes from /healthz and /readyz."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from kafka_eventbridge.telemetry import Health, HttpServer, Metrics

STALL = 0.3  # seconds without a loop turn before /healthz fails


@pytest.fixture
def served() -> Iterator[tuple[Health, str]]:
    health = Health(STALL)
    health.start_done()
    server = HttpServer("127.0.0.1", 0, Metrics(), health)
    server.start()
    try:
        yield health, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_healthz_fails_when_the_loop_stalls(served: tuple[Health, str]) -> None:
    health, url = served
    health.beat()
    assert status(f"{url}/healthz")[0] == 200
    time.sleep(STALL * 2)  # no beat: the loop is stuck
    code, body = status(f"{url}/healthz")
    assert code == 503
    assert "stalled" in body
    health.beat()
    assert status(f"{url}/healthz")[0] == 200


def test_readyz_is_503_until_in_the_group_and_after_a_fatal_error(
    served: tuple[Health, str],
) -> None:
    health, url = served
    assert status(f"{url}/readyz")[0] == 503
    health.joined()  # an assignment callback, with or without partitions
    assert status(f"{url}/readyz")[0] == 200
    health.failed("AccessDeniedException")
    code, body = status(f"{url}/readyz")
    assert code == 503
    assert "AccessDeniedException" in body
