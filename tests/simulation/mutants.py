"""Planted bugs: each undoes one thing the delivery guarantee rests on.

They exist to show that the simulator can fail: ``test_simulation`` asserts that each is
caught within a fixed budget of schedules. Each is a context manager that patches the
product for the duration of a ``with`` block, and nothing else (tests only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

from kafka_eventbridge import app, classify, offsets
from kafka_eventbridge.classify import BatchOutcome


@contextlib.contextmanager
def commit_highest() -> Iterator[None]:
    """Commit one past the last record seen instead of the contiguous watermark."""

    def to_commit(self: offsets.OffsetTracker, *_: Any, **__: Any) -> dict[Any, int]:
        return {
            tp: state.next_offset
            for tp, state in self._partitions.items()
            if state.next_offset is not None
        }

    with mock.patch.object(offsets.OffsetTracker, "to_commit", to_commit):
        yield


@contextlib.contextmanager
def skip_epoch_check() -> Iterator[None]:
    """Treat work of a revoked or rewound assignment as current."""
    with mock.patch.object(app.Bridge, "_current", lambda self, item: True):
        yield


@contextlib.contextmanager
def accept_empty_200() -> Iterator[None]:
    """Take a 2xx answer without per-entry results as "everything accepted"."""
    real = classify.classify_response

    def lenient(batch: Any, response: dict[str, Any]) -> BatchOutcome:
        if not response.get("Entries") and not response.get("FailedEntryCount"):
            return BatchOutcome(accepted=list(batch))
        return real(batch, response)

    with mock.patch.object(classify, "classify_response", lenient):
        yield


@contextlib.contextmanager
def assume_async_commits() -> Iterator[None]:
    """Record an asynchronous commit as done when it is sent, not when it is confirmed."""
    real = app.Bridge.commit

    def commit(self: app.Bridge, partitions: Any = None, *, wait: bool) -> None:
        offsets_ = self.tracker.to_commit(partitions, changed_only=not wait)
        real(self, partitions, wait=wait)
        if not wait:
            self.tracker.committed(offsets_)

    with mock.patch.object(app.Bridge, "commit", commit):
        yield


@contextlib.contextmanager
def retry_outside_lane() -> Iterator[None]:
    """Ordered mode: retried entries wait in the retry queue, outside their lane."""
    real = app.Bridge.retry

    def retry(self: app.Bridge, items: Any, now: float, delay: float | None = None) -> None:
        self.batcher.ordered = False
        try:
            real(self, items, now, delay)
        finally:
            self.batcher.ordered = True

    with mock.patch.object(app.Bridge, "retry", retry):
        yield


@contextlib.contextmanager
def hold_without_end() -> Iterator[None]:
    """At the buffer bound, stop polling until the buffer drains, however long that takes
    (no pause): rebalance and commit callbacks, and the group membership, wait with it."""
    with mock.patch.object(app, "BACKPRESSURE_HOLD", float("inf")):
        yield


@contextlib.contextmanager
def stale_turn_time() -> Iterator[None]:
    """After a refill between a turn's records, map the rest at the time the turn's first
    records were mapped at: the parts are handed a time before the refill's."""
    real_submit = app.Bridge.submit
    mapping_at: dict[int, float] = {}

    def submit(self: app.Bridge, message: Any, now: float) -> None:
        mapping_at[id(self)] = now
        real_submit(self, message, now)

    def refill(self: app.Bridge) -> float:
        self.pump(self.publisher.completions(0), self.clock.monotonic())
        return mapping_at[id(self)]

    with (
        mock.patch.object(app.Bridge, "submit", submit),
        mock.patch.object(app.Bridge, "_refill", refill),
    ):
        yield


@contextlib.contextmanager
def shutdown_without_poll() -> Iterator[None]:
    """Drain at shutdown without polling the consumer: a rebalance that started before the
    signal is left for librdkafka's close."""
    with mock.patch.object(app.Bridge, "_poll_paused", lambda self: None):
        yield


MUTANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "commit-highest": commit_highest,
    "skip-epoch-check": skip_epoch_check,
    "accept-empty-200": accept_empty_200,
    "assume-async-commits": assume_async_commits,
    "retry-outside-lane": retry_outside_lane,
    "hold-without-end": hold_without_end,
    "stale-turn-time": stale_turn_time,
    "shutdown-without-poll": shutdown_without_poll,
}
