"""Offset tracking: the contiguous watermark of resolved records, per partition.

Batches complete out of order, but a partition's offset N+1 may only be committed once
every record at or below N is resolved (delivered, filtered, or acknowledged by the
dead-letter topic). Each partition keeps its unresolved offsets in consume order; the
watermark is the oldest unresolved offset, or one past the last offset seen.

Each assignment of a partition gets a new *epoch*. Work that was in flight when a
partition was revoked carries the old epoch and is ignored when it completes, so a late
result can never move the watermark of a later assignment. Offsets that go backwards
inside an assignment (a reset after log truncation, a seek) raise :class:`RewindError`, for the
caller to treat as a revoke plus an assign, which starts a new epoch.

Pure bookkeeping: no Kafka calls here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

PartitionId = tuple[str, int]


class RewindError(Exception):
    """A record's offset went backwards inside its partition's assignment."""


@dataclass
class _Partition:
    epoch: int
    pending: deque[int] = field(default_factory=deque)  # unresolved or not yet popped, ascending
    sizes: dict[int, int] = field(default_factory=dict)  # the unresolved ones: offset -> bytes
    next_offset: int | None = None  # one past the last offset seen
    committed: int | None = None  # the last offset committed (the next one to read)

    def watermark(self) -> int | None:
        return self.pending[0] if self.pending else self.next_offset


class OffsetTracker:
    """Unresolved records per partition, the buffer totals, and what to commit."""

    def __init__(self) -> None:
        self._partitions: dict[PartitionId, _Partition] = {}
        self._epochs = 0
        self.buffered_records = 0
        self.buffered_bytes = 0

    def assign(self, partitions: Iterable[PartitionId]) -> None:
        """Start a new epoch for each partition (a partition already tracked starts over,
        keeping only what is known to be committed)."""
        for tp in partitions:
            old = self._partitions.get(tp)
            self.forget([tp])
            self._epochs += 1
            committed = None if old is None else old.committed
            self._partitions[tp] = _Partition(epoch=self._epochs, committed=committed)

    def forget(self, partitions: Iterable[PartitionId]) -> None:
        """Drop revoked partitions; their unresolved records will be redelivered elsewhere."""
        for tp in partitions:
            state = self._partitions.pop(tp, None)
            if state is not None:
                self.buffered_records -= len(state.sizes)
                self.buffered_bytes -= sum(state.sizes.values())

    def epoch(self, tp: PartitionId) -> int | None:
        state = self._partitions.get(tp)
        return None if state is None else state.epoch

    def add(self, tp: PartitionId, offset: int, size: int) -> int | None:
        """Track a consumed record; returns the epoch it belongs to (None if not assigned).

        Offsets ascend within an epoch: one that goes backwards from what the partition's
        assignment has seen raises :class:`RewindError` and is not tracked."""
        state = self._partitions.get(tp)
        if state is None:
            return None
        last = state.next_offset
        if last is not None and offset < last:
            raise RewindError(tp, offset)
        state.pending.append(offset)
        state.sizes[offset] = size
        state.next_offset = offset + 1
        self.buffered_records += 1
        self.buffered_bytes += size
        return state.epoch

    def resolve(self, tp: PartitionId, offset: int, epoch: int) -> bool:
        """Mark a record resolved; False when it belongs to a revoked assignment."""
        state = self._partitions.get(tp)
        if state is None or state.epoch != epoch or offset not in state.sizes:
            return False
        sizes = state.sizes
        self.buffered_records -= 1
        self.buffered_bytes -= sizes.pop(offset)
        pending = state.pending
        while pending and pending[0] not in sizes:  # resolved: pending but no longer sized
            pending.popleft()
        return True

    def unresolved(self, partitions: Iterable[PartitionId] | None = None) -> int:
        chosen = self._partitions if partitions is None else partitions
        return sum(len(s.sizes) for tp in chosen if (s := self._partitions.get(tp)))

    def watermark(self, tp: PartitionId) -> int | None:
        state = self._partitions.get(tp)
        return None if state is None else state.watermark()

    def to_commit(
        self, partitions: Iterable[PartitionId] | None = None, *, changed_only: bool = True
    ) -> dict[PartitionId, int]:
        """Watermarks to commit: those that moved since the last commit, or all of them."""
        chosen = list(self._partitions) if partitions is None else partitions
        offsets = {}
        for tp in chosen:
            state = self._partitions.get(tp)
            if state is None:
                continue
            mark = state.watermark()
            if mark is not None and (mark != state.committed or not changed_only):
                offsets[tp] = mark
        return offsets

    def committed(self, offsets: dict[PartitionId, int]) -> None:
        """Record that the broker confirmed these commits (never before it did: an offset
        not recorded here is committed again at the next turn, so a failed commit is
        retried even on a partition that has gone quiet)."""
        for tp, offset in offsets.items():
            state = self._partitions.get(tp)
            if state is not None:
                state.committed = offset

    def uncommitted(self, offsets: dict[PartitionId, int]) -> dict[PartitionId, int]:
        """Those of ``offsets`` the broker has not confirmed (of partitions still tracked)."""
        return {
            tp: offset
            for tp, offset in offsets.items()
            if (state := self._partitions.get(tp)) is not None and state.committed != offset
        }

    @property
    def partitions(self) -> list[PartitionId]:
        return list(self._partitions)
