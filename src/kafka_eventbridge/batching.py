"""Batching: entries grouped into requests within the API's limits, and the retry queue.

Entries wait in *lanes*. Without ordering there is one lane, and retried entries wait out
their backoff in the :class:`RetryQueue`, then go back to the front of the lane. With
``BRIDGE_ORDERING=partition`` each partition has its own lane, and a lane with a batch in
flight sends nothing more until *that* batch completes (a late completion of a batch from
an earlier assignment releases nothing else), so a partition never has two requests racing.
Retried entries go straight back to the front of their lane, which then *holds* until
their backoff is over: newer entries of the partition wait behind them instead of
overtaking them.

A lane is ready when it holds a full batch, or when its oldest entry has waited the
linger time. A batch takes entries from the front while both the entry count and the
request's total bytes stay within the limits; an entry never exceeds the byte limit on
its own (the mapper refuses those).

Pure: the caller passes the clock in.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.offsets import PartitionId
from kafka_eventbridge.records import SourceRecord

_ALL = ("", -1)  # the one lane when order does not matter


@dataclass(slots=True, eq=False)
class Pending:
    """An entry on its way, carrying its record back to the offset tracker."""

    entry: Entry
    record: SourceRecord
    epoch: int
    queued_at: float = 0.0
    attempts: int = 0
    first_attempt_at: float | None = None
    solo: bool = False  # sent alone, to find the entry that made a whole request fail

    @property
    def tp(self) -> PartitionId:
        return (self.record.topic, self.record.partition)


@dataclass(slots=True)
class _Lane:
    items: deque[Pending] = field(default_factory=deque)
    bytes: int = 0
    in_flight: Batch | None = None  # ordered mode: the one batch of this lane being sent
    hold_until: float = float("-inf")  # ordered mode: retried entries wait out their backoff


@dataclass(slots=True, eq=False)
class Batch:
    """Entries sent in one request."""

    lane: PartitionId
    items: list[Pending]

    @property
    def size(self) -> int:
        return sum(p.entry.size for p in self.items)


class Batcher:
    """Lanes of entries waiting to be sent."""

    def __init__(
        self, *, max_entries: int, max_bytes: int, linger: float, ordered: bool = False
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.linger = linger
        self.ordered = ordered
        self._lanes: dict[PartitionId, _Lane] = {}
        self.count = 0

    def _lane(self, item: Pending) -> tuple[PartitionId, _Lane]:
        key = item.tp if self.ordered else _ALL
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        return key, lane

    def add(self, item: Pending, now: float) -> None:
        item.queued_at = now
        _, lane = self._lane(item)
        lane.items.append(item)
        lane.bytes += item.entry.size
        self.count += 1

    def requeue(self, items: Iterable[Pending], hold_until: float | None = None) -> None:
        """Put retried entries back at the front of their lanes, in the order given.

        Without ``hold_until`` they are due at once; with it (ordered mode) their lanes send
        nothing before that time, so the entries behind them keep their place."""
        for item in reversed(list(items)):
            item.queued_at = float("-inf")
            _, lane = self._lane(item)
            lane.items.appendleft(item)
            lane.bytes += item.entry.size
            self.count += 1
            if hold_until is not None:
                lane.hold_until = max(lane.hold_until, hold_until)

    def _sendable(self, lane: _Lane, now: float) -> bool:
        return bool(lane.items) and lane.in_flight is None and now >= lane.hold_until

    def _due(self, lane: _Lane, now: float) -> bool:
        if not self._sendable(lane, now):
            return False
        if len(lane.items) >= self.max_entries or lane.bytes >= self.max_bytes:
            return True
        # The same sum as next_due(): a difference could round below the linger at the very
        # time next_due() gives, and the loop would wake up to nothing due, again and again.
        return now >= lane.items[0].queued_at + self.linger

    def take(self, now: float, limit: int, *, force: bool = False) -> list[Batch]:
        """Up to ``limit`` batches that are due (with ``force``: whatever may be sent, linger
        or not; a backoff still holds)."""
        batches: list[Batch] = []
        for key, lane in self._lanes.items():
            while len(batches) < limit and (
                self._due(lane, now) or (force and self._sendable(lane, now))
            ):
                batch = self._cut(key, lane)
                batches.append(batch)
                if self.ordered:
                    lane.in_flight = batch
        return batches

    def _cut(self, key: PartitionId, lane: _Lane) -> Batch:
        items: list[Pending] = []
        total = 0
        while lane.items and len(items) < self.max_entries:
            head = lane.items[0]
            if items and (head.solo or total + head.entry.size > self.max_bytes):
                break
            items.append(lane.items.popleft())
            total += head.entry.size
            if head.solo:
                break
        lane.bytes -= total
        self.count -= len(items)
        return Batch(key, items)

    def release(self, batch: Batch) -> None:
        """A batch completed: its lane may send again (ordered mode). Only the batch the
        lane is waiting for releases it."""
        lane = self._lanes.get(batch.lane)
        if lane is not None and lane.in_flight is batch:
            lane.in_flight = None
            if self.ordered and not lane.items:
                del self._lanes[batch.lane]

    def next_due(self) -> float | None:
        """When the earliest waiting lane becomes due by linger or backoff (None if nothing
        waits, or every waiting lane has a batch in flight)."""
        times = [
            max(lane.items[0].queued_at + self.linger, lane.hold_until)
            for lane in self._lanes.values()
            if lane.items and lane.in_flight is None
        ]
        return min(times, default=None)

    def drop(self, partitions: Iterable[PartitionId]) -> list[Pending]:
        """Remove the entries of revoked partitions.

        An ordered lane whose batch is still in flight stays, empty, until that batch
        completes: entries of the partition's next assignment wait behind it."""
        gone = set(partitions)
        dropped: list[Pending] = []
        for key, lane in list(self._lanes.items()):
            kept = deque(p for p in lane.items if p.tp not in gone)
            dropped.extend(p for p in lane.items if p.tp in gone)
            lane.items = kept
            lane.bytes = sum(p.entry.size for p in kept)
            if self.ordered and key in gone:
                lane.hold_until = float("-inf")
                if lane.in_flight is None:
                    del self._lanes[key]
        self.count -= len(dropped)
        return dropped

    def __len__(self) -> int:
        return self.count


class RetryQueue:
    """Entries waiting out their backoff, earliest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Pending]] = []
        self._seq = itertools.count()

    def schedule(self, item: Pending, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), item))

    def pop_due(self, now: float) -> list[Pending]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        # Keep each partition's original order when they go back into their lane.
        due.sort(key=lambda p: (p.tp, p.record.offset))
        return due

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def drop(self, partitions: Iterable[PartitionId]) -> list[Pending]:
        gone = set(partitions)
        dropped = [entry for _, _, entry in self._heap if entry.tp in gone]
        self._heap = [item for item in self._heap if item[2].tp not in gone]
        heapq.heapify(self._heap)
        return dropped

    def __iter__(self) -> Iterator[Pending]:
        return (item for _, _, item in self._heap)

    def __len__(self) -> int:
        return len(self._heap)
