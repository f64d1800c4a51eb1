"""What the loop talks to: the clock, the consumer, the publisher and the dead-letter producer.

:class:`~kafka_eventbridge.app.Bridge` knows these only by the protocols below. In
production they are confluent-kafka, the publisher's HTTP calls and the system clock
(:func:`~kafka_eventbridge.app.connect`); the simulator in ``tests/simulation`` puts
in-memory ones with a virtual clock in their place, and runs the very same loop through
thousands of seeded schedules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka_eventbridge.batching import Batch
from kafka_eventbridge.consumer import CommitListener, RebalanceListener
from kafka_eventbridge.deadletter import Delivered
from kafka_eventbridge.errors import FatalError, RecordError
from kafka_eventbridge.offsets import PartitionId
from kafka_eventbridge.publisher import Completion
from kafka_eventbridge.records import SourceRecord


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""

    def sleep(self, seconds: float) -> None:
        """Wait (the loop sleeps only when nothing else can happen sooner)."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Message(Protocol):
    """A consumed record as confluent-kafka hands it over."""

    def error(self) -> Any: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...


class Consumer(Protocol):
    """The group member: records in, rebalances and commit results through callbacks."""

    fatal: FatalError | None
    assignment: set[PartitionId]
    abandoned: bool  # close gave up waiting, and the client's threads still run

    def subscribe(self) -> None:
        """Join the group; rebalance callbacks run inside later :meth:`consume` calls."""

    def consume(self, count: int, timeout: float) -> Sequence[Message]:
        """Up to ``count`` records, waiting up to ``timeout`` for the first one."""

    def message_error(self, err: Any) -> None:
        """An error delivered in place of a record."""

    def pause(self, partitions: Iterable[PartitionId]) -> None: ...
    def resume(self, partitions: Iterable[PartitionId]) -> None: ...

    def commit(self, offsets: Mapping[PartitionId, int], *, wait: bool) -> None:
        """Commit; the result reaches the commit listener (before returning when ``wait``)."""

    def seek(self, tp: PartitionId, offset: int) -> None:
        """Fetch the partition again from ``offset``."""

    def high_watermark(self, tp: PartitionId) -> int | None:
        """The high watermark of the partition's latest fetch (None: not known)."""

    def close(self) -> None: ...


class Publisher(Protocol):
    """Batches out, completions back, at most ``max_in_flight`` calls at once."""

    in_flight: int
    max_in_flight: int
    endpoint: str

    @property
    def capacity(self) -> int:
        """Calls that may start now."""

    def submit(self, batch: Batch) -> None:
        """Start a call; its :class:`Completion` comes back from :meth:`completions`."""

    def flush(self) -> None:
        """Put on the wire the calls :meth:`submit` queued (:meth:`completions` does too)."""

    def completions(self, timeout: float = 0.0) -> list[Completion]:
        """Finished calls; waits up to ``timeout`` for the first one when none is ready."""

    def close(self) -> None: ...


class DeadLetters(Protocol):
    """The dead-letter topic's producer: a record is resolved only by its delivery report."""

    pending: int
    fatal: FatalError | None

    def check_topic(self) -> None:
        """Fail at start (``FatalError``) when the topic cannot be used."""

    def send(self, record: SourceRecord, error: RecordError, attempts: int, token: Any) -> None:
        """Produce one dead letter; ``token`` comes back through the delivery callback."""

    def poll(self) -> None:
        """Serve delivery reports."""

    def close(self, timeout: float) -> int:
        """Wait up to ``timeout`` for outstanding reports, then release the client; returns
        how many were never confirmed (their records stay uncommitted)."""


DeadLetterDelivered = Delivered  # the dead-letter producer's own callback type


class LagReader(Protocol):
    """Reads the group's lag from the brokers off the loop's thread (lag.LagMonitor)."""

    group_partitions: int | None  # partitions of the subscribed topics, once known

    def start(self) -> None: ...

    def sample(self, now: float) -> None:
        """On the loop's thread: hand over the assignment and the fetch high watermarks."""

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Connections:
    """How the loop gets its peers: each factory receives the loop's callbacks."""

    consumer: Callable[[RebalanceListener, CommitListener], Consumer]
    dead_letters: Callable[[DeadLetterDelivered, Callable[[], None]], DeadLetters]
    publisher: Callable[[], Publisher]
    clock: Clock
    # The brokers' view of the lag, given the consumer; None where there are no brokers.
    lag: Callable[[Consumer], LagReader] | None = None
