"""The simulator names its first seed in the run's header, so every CI log can replay it."""

from __future__ import annotations

from tests.simulation.test_simulation import FIRST_SEED, SCHEDULES


def pytest_report_header() -> str:
    return (
        f"simulation: {SCHEDULES} schedules from seed {FIRST_SEED} "
        f"(BRIDGE_SIM_SEED={FIRST_SEED} replays them; one: "
        f".venv/bin/python -m tests.simulation --seed N)"
    )
