"""The dead-letter ratio guard: a bad deploy stops the bridge instead of dumping a stream."""

from __future__ import annotations

import pytest

from kafka_eventbridge.guard import DeadLetterGuard


def fed(max_ratio: float, window: int, outcomes: str) -> DeadLetterGuard:
    """A guard after these outcomes: ``D`` dead-lettered, ``.`` delivered."""
    guard = DeadLetterGuard(max_ratio, window)
    for outcome in outcomes:
        if outcome == "D":
            guard.dead_lettered()
        else:
            guard.delivered(1)
    return guard


@pytest.mark.parametrize(
    ("outcomes", "tripped"),
    [
        ("DDD", False),  # window not full yet: a few early bad records never trip it
        ("DDDD", True),
        ("DD..", False),  # exactly at the ratio is allowed
        ("DDD.", True),
        ("....DDD.", True),  # only the last four count
        ("DDDD....", False),  # the bad ones slid out of the window
        ("DDDD.", True),  # 3 of the last 4
        ("DDDD..", False),  # 2 of the last 4
    ],
)
def test_trips_only_on_a_full_window_above_the_ratio(outcomes: str, tripped: bool) -> None:
    assert fed(0.5, 4, outcomes).tripped is tripped


def test_ratio_of_the_window() -> None:
    guard = fed(0.5, 4, "DDDD..D")

    assert guard.ratio == pytest.approx(2 / 4)


def test_zero_disables_the_guard() -> None:
    guard = fed(0.0, 2, "D" * 10)

    assert not guard.tripped
    assert guard.ratio == 0.0


def test_ratio_one_never_trips() -> None:
    assert not fed(1.0, 3, "DDDDD").tripped


def test_window_of_one() -> None:
    assert fed(0.5, 1, ".D").tripped
    assert not fed(0.5, 1, "D.").tripped


@pytest.mark.parametrize("outcomes", ["DD.D....DDD.D", "D" * 7 + "." * 3, "..D.D.D.D"])
def test_delivered_in_bulk_judges_as_one_at_a_time(outcomes: str) -> None:
    bulk, done = DeadLetterGuard(0.5, 4), 0
    for run in outcomes.replace("D", " D ").split():
        if run == "D":
            bulk.dead_lettered()
        else:
            bulk.delivered(len(run))
        done += len(run)
        one_at_a_time = fed(0.5, 4, outcomes[:done])
        assert (bulk.ratio, bulk.tripped) == (one_at_a_time.ratio, one_at_a_time.tripped)
    assert bulk.tripped is fed(0.5, 4, outcomes).tripped
