"""Fixtures of the reliability suite: the integration suite's, plus the results file.

Every scenario reports a :class:`~tests.reliability.harness.Tally`. The figures are printed
at the end of the run (pytest would otherwise swallow them with the test's output) and
appended as JSON lines to ``BRIDGE_RELIABILITY_RESULTS``, by default
``reliability-results.jsonl`` in pytest's base temporary directory.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    bridge,
    dlq,
    fake,
    group,
    pytest_runtest_makereport,
    scenario,
    start_bridge,
    topic,
)
from tests.reliability.harness import ENV_RESULTS, ENV_SEED, Results, SeededRandom

__all__ = [
    "bridge",
    "dlq",
    "fake",
    "group",
    "pytest_runtest_makereport",
    "results",
    "rng",
    "scenario",
    "start_bridge",
    "topic",
]

_RESULTS: list[Results] = []


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Results]:
    """Where scenarios report their figures (see the module docstring)."""
    given = os.environ.get(ENV_RESULTS)
    path = Path(given) if given else tmp_path_factory.getbasetemp() / "reliability-results.jsonl"
    sink = Results(path)
    _RESULTS.append(sink)
    yield sink


@pytest.fixture
def rng() -> SeededRandom:
    """Randomness a failing run can replay: the seed is printed and reported,
    ``BRIDGE_RELIABILITY_SEED`` sets it."""
    seed = int(os.environ.get(ENV_SEED) or random.SystemRandom().randrange(1 << 32))
    print(f"random seed {seed} (replay with {ENV_SEED}={seed})")
    return SeededRandom(seed)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for sink in _RESULTS:
        if sink.lines:
            terminalreporter.section("reliability figures")
            for line in sink.lines:
                terminalreporter.write_line(line)
            terminalreporter.write_line(f"(JSON lines appended to {sink.path})")
