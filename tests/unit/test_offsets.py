"""Offsets: the contiguous watermark per partition and what gets committed."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations

import pytest

from kafka_eventbridge.offsets import OffsetTracker, PartitionId, RewindError

TP: PartitionId = ("orders", 0)
OTHER: PartitionId = ("orders", 1)


def tracker_with(
    tp: PartitionId, offsets: Sequence[int], size: int = 10
) -> tuple[OffsetTracker, int]:
    """A tracker with ``tp`` assigned and these offsets consumed; and their epoch."""
    tracker = OffsetTracker()
    tracker.assign([tp])
    epoch = None
    for offset in offsets:
        epoch = tracker.add(tp, offset, size)
    assert epoch is not None
    return tracker, epoch


@pytest.mark.parametrize("order", list(permutations([10, 11, 12])), ids=str)
def test_watermark_moves_only_over_contiguous_resolved_records(order: tuple[int, ...]) -> None:
    tracker, epoch = tracker_with(TP, range(10, 13))
    done: set[int] = set()

    for offset in order:
        assert tracker.resolve(TP, offset, epoch)
        done.add(offset)
        # The watermark is the oldest unresolved offset: everything below it is done.
        expected = next((o for o in range(10, 13) if o not in done), 13)
        assert tracker.watermark(TP) == expected

    assert tracker.to_commit() == {TP: 13}


def test_resolving_3_then_1_then_2() -> None:
    tracker, epoch = tracker_with(TP, range(1, 4))

    tracker.resolve(TP, 3, epoch)
    assert tracker.to_commit() == {TP: 1}
    tracker.resolve(TP, 1, epoch)
    assert tracker.to_commit() == {TP: 2}
    tracker.resolve(TP, 2, epoch)
    assert tracker.to_commit() == {TP: 4}


def test_offsets_with_gaps_commit_past_the_last_seen() -> None:
    # Compacted topics and transaction markers leave holes in the offsets.
    tracker, epoch = tracker_with(TP, [5, 9, 20])
    assert tracker.to_commit() == {TP: 5}
    for offset in (20, 5, 9):
        tracker.resolve(TP, offset, epoch)

    assert tracker.to_commit() == {TP: 21}


def test_nothing_to_commit_before_any_record() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])

    assert tracker.watermark(TP) is None
    assert tracker.to_commit() == {}
    assert tracker.to_commit(changed_only=False) == {}


def test_unresolved_first_record_commits_its_own_offset() -> None:
    tracker, _ = tracker_with(TP, range(7, 9))

    assert tracker.to_commit() == {TP: 7}


def test_commits_only_watermarks_that_moved() -> None:
    tracker, epoch = tracker_with(TP, range(3))
    tracker.assign([OTHER])
    other_epoch = tracker.add(OTHER, 0, 1)
    assert other_epoch is not None
    tracker.resolve(TP, 0, epoch)

    first = tracker.to_commit()
    assert first == {TP: 1, OTHER: 0}
    tracker.committed(first)
    assert tracker.to_commit() == {}
    assert tracker.to_commit(changed_only=False) == {TP: 1, OTHER: 0}

    tracker.resolve(OTHER, 0, other_epoch)
    assert tracker.to_commit() == {OTHER: 1}
    assert tracker.to_commit([TP], changed_only=False) == {TP: 1}
    assert tracker.to_commit([("unknown", 0)]) == {}


def test_result_of_an_earlier_assignment_is_ignored() -> None:
    tracker, old_epoch = tracker_with(TP, range(2))
    tracker.forget([TP])
    tracker.assign([TP])
    new_epoch = tracker.add(TP, 0, 10)
    assert new_epoch is not None and new_epoch != old_epoch

    assert not tracker.resolve(TP, 0, old_epoch)
    assert tracker.watermark(TP) == 0
    assert tracker.buffered_records == 1

    assert tracker.resolve(TP, 0, new_epoch)
    assert tracker.watermark(TP) == 1


def test_result_after_revoke_is_ignored() -> None:
    tracker, epoch = tracker_with(TP, range(2))
    tracker.forget([TP])

    assert not tracker.resolve(TP, 0, epoch)
    assert tracker.epoch(TP) is None
    assert tracker.to_commit() == {}
    assert tracker.add(TP, 2, 10) is None  # a record left in the local queue


def test_resolving_twice_or_an_unknown_offset_changes_nothing() -> None:
    tracker, epoch = tracker_with(TP, range(3), size=10)

    assert tracker.resolve(TP, 1, epoch)
    assert not tracker.resolve(TP, 1, epoch)
    assert not tracker.resolve(TP, 99, epoch)
    assert (tracker.buffered_records, tracker.buffered_bytes) == (2, 20)
    assert tracker.watermark(TP) == 0


def test_buffered_records_and_bytes() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP, OTHER])
    epoch = tracker.add(TP, 0, 100)
    tracker.add(TP, 1, 200)
    tracker.add(OTHER, 0, 50)
    assert epoch is not None
    assert (tracker.buffered_records, tracker.buffered_bytes) == (3, 350)
    assert tracker.unresolved() == 3
    assert tracker.unresolved([TP]) == 2

    tracker.resolve(TP, 1, epoch)
    assert (tracker.buffered_records, tracker.buffered_bytes) == (2, 150)

    tracker.forget([TP])
    assert (tracker.buffered_records, tracker.buffered_bytes) == (1, 50)
    assert tracker.unresolved([TP]) == 0
    assert tracker.partitions == [OTHER]


def test_an_offset_below_what_was_seen_is_a_rewind() -> None:
    tracker, _ = tracker_with(TP, range(5, 7))

    for offset in (3, 6):
        with pytest.raises(RewindError):
            tracker.add(TP, offset, 10)
    assert tracker.unresolved([TP]) == 2 and tracker.buffered_records == 2  # not tracked
    assert tracker.add(TP, 7, 10) is not None
    assert tracker.add(OTHER, 0, 10) is None  # not assigned: nothing to rewind


def test_assigning_again_starts_a_new_epoch_that_fences_the_old_one() -> None:
    # A rewind is handled as a revoke plus an assign: the partition's earlier records
    # (and their late results) belong to the old epoch and move nothing.
    tracker, old = tracker_with(TP, range(5, 7), size=10)
    tracker.committed({TP: 5})

    tracker.assign([TP])
    new = tracker.add(TP, 3, 10)

    assert new is not None and new != old
    assert (tracker.buffered_records, tracker.buffered_bytes) == (1, 10)
    assert not tracker.resolve(TP, 5, old)
    assert not tracker.resolve(TP, 3, old)
    assert tracker.to_commit() == {TP: 3}
    assert tracker.resolve(TP, 3, new)
    assert tracker.to_commit() == {TP: 4}


def test_only_confirmed_commits_count() -> None:
    tracker, epoch = tracker_with(TP, range(3))
    for offset in range(3):
        tracker.resolve(TP, offset, epoch)

    assert tracker.to_commit() == {TP: 3}
    assert tracker.to_commit() == {TP: 3}  # not confirmed yet: asked again
    assert tracker.uncommitted({TP: 3}) == {TP: 3}
    tracker.committed({TP: 3})
    assert tracker.to_commit() == {}
    assert tracker.uncommitted({TP: 3}) == {}


def test_committed_for_a_revoked_partition_is_ignored() -> None:
    tracker, _ = tracker_with(TP, range(1))
    tracker.forget([TP])
    tracker.committed({TP: 1})

    assert tracker.partitions == []
