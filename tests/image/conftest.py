"""Fixtures of the image suite: the built image, and containers run the way users run them.

The image is ``BRIDGE_IMAGE`` (default ``kafka-eventbridge:local``, what ``make image``
builds). Containers share the host's network, so the bridge in them reaches the session's
broker and the stand-in on 127.0.0.1; nothing goes through the engine's bridge network. A
missing engine or image fails the suite: it was asked for that peer.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Generator, Iterator

import pytest

from tests.image.support import BridgeContainer, docker

IMAGE = os.environ.get("BRIDGE_IMAGE") or "kafka-eventbridge:local"


@pytest.fixture(scope="session")
def image() -> str:
    """The image under test; fails (does not skip) when the engine or the image is missing."""
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(
            f"no Docker engine answers ({exc}); scripts/docker-engine.sh starts one",
            pytrace=False,
        )
    try:
        docker("image", "inspect", IMAGE, timeout=10)
    except subprocess.CalledProcessError:
        pytest.fail(f"image {IMAGE} is missing: make image builds it", pytrace=False)
    return IMAGE


@pytest.fixture
def containers(image: str, request: pytest.FixtureRequest) -> Iterator[list[BridgeContainer]]:
    """Containers a test starts; removed at the end, their logs shown when the test failed."""
    started: list[BridgeContainer] = []
    yield started
    report = getattr(request.node, "rep_call", None)
    for container in started:
        if report is not None and report.failed:
            print(f"--- {container.name}\n{container.logs()[-6000:]}")
        container.remove()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The image's size, and how much of it is the bridge's own layer, after every run."""
    try:
        size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE, timeout=10))
        history = docker("history", "--no-trunc", "--format", "{{json .}}", IMAGE, timeout=10)
    except (OSError, subprocess.SubprocessError, ValueError):
        return
    layers = [json.loads(line) for line in history.splitlines() if line.strip()]
    venv = next((layer for layer in layers if "COPY" in layer.get("CreatedBy", "")), None)
    terminalreporter.write_sep("-", "image size")
    terminalreporter.write_line(f"{IMAGE}: {size / 1e6:.1f} MB")
    if venv is not None:
        terminalreporter.write_line(f"  the bridge's virtualenv layer: {venv['Size']}")
