"""Batching: requests within the API's limits, linger, ordering, retries first."""

from __future__ import annotations

import pytest

from kafka_eventbridge.batching import Batch, Batcher, Pending, RetryQueue
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.records import SourceRecord

P0 = ("orders", 0)
P1 = ("orders", 1)


def pending(offset: int, *, partition: int = 0, size: int = 100, solo: bool = False) -> Pending:
    entry = Entry(
        source="aws.partner/acme.com/orders",
        detail_type="orders",
        detail="{}",
        resources=None,
        time_ms=None,
        event_bus=None,
        trace_header=None,
        size=size,
    )
    record = SourceRecord("orders", partition, offset, None, None, b"{}", [])
    return Pending(entry, record, epoch=1, solo=solo)


def offsets(batch: Batch) -> list[tuple[int, int]]:
    return [(p.record.partition, p.record.offset) for p in batch.items]


def batcher(
    *, max_entries: int = 20, max_bytes: int = 262_144, linger: float = 1.0, ordered: bool = False
) -> Batcher:
    return Batcher(max_entries=max_entries, max_bytes=max_bytes, linger=linger, ordered=ordered)


@pytest.mark.parametrize("max_entries", [20, 10])
def test_batches_hold_at_most_max_entries(max_entries: int) -> None:
    b = batcher(max_entries=max_entries)
    for offset in range(2 * max_entries + 5):
        b.add(pending(offset), now=0.0)

    full = b.take(now=0.0, limit=100)
    assert [len(batch.items) for batch in full] == [max_entries, max_entries]
    assert len(b) == 5

    rest = b.take(now=1.0, limit=100)
    assert [len(batch.items) for batch in rest] == [5]
    assert [o for batch in full + rest for _, o in offsets(batch)] == list(
        range(2 * max_entries + 5)
    )
    assert len(b) == 0


def test_take_sends_no_more_batches_than_the_limit() -> None:
    b = batcher(max_entries=2)
    for offset in range(6):
        b.add(pending(offset), now=0.0)

    assert len(b.take(now=0.0, limit=1)) == 1
    assert len(b.take(now=0.0, limit=0)) == 0
    assert len(b) == 4


def test_request_total_stays_within_the_byte_limit() -> None:
    b = batcher(max_bytes=1000, linger=0.0)
    for offset in range(5):
        b.add(pending(offset, size=400), now=0.0)

    batches = b.take(now=0.0, limit=100)
    assert [len(batch.items) for batch in batches] == [2, 2, 1]
    assert [batch.size for batch in batches] == [800, 800, 400]


def test_entries_exactly_at_the_byte_limit_share_a_request() -> None:
    b = batcher(max_bytes=1000, linger=0.0)
    for offset in range(3):
        b.add(pending(offset, size=500), now=0.0)

    assert [batch.size for batch in b.take(now=0.0, limit=100)] == [1000, 500]


def test_batch_is_not_due_before_the_linger_time() -> None:
    b = batcher(linger=0.05)
    b.add(pending(0), now=10.0)
    b.add(pending(1), now=10.04)

    assert b.take(now=10.049, limit=10) == []
    assert b.next_due() == pytest.approx(10.05)
    (batch,) = b.take(now=10.05, limit=10)
    assert offsets(batch) == [(0, 0), (0, 1)]
    assert b.next_due() is None


def test_a_batch_is_due_at_the_time_next_due_gives() -> None:
    # 0.27414823879492717 - 0.22414823879492718 rounds below 0.05: a loop woken at
    # next_due() found nothing due and woke again at once, forever (found by the simulator).
    b = batcher(linger=0.05)
    b.add(pending(0), now=0.22414823879492718)
    due = b.next_due()
    assert due is not None
    assert len(b.take(now=due, limit=1)) == 1


def test_full_batch_is_due_at_once() -> None:
    b = batcher(max_entries=3, linger=60.0)
    for offset in range(3):
        b.add(pending(offset), now=0.0)

    assert [len(batch.items) for batch in b.take(now=0.0, limit=10)] == [3]


def test_batch_full_by_bytes_is_due_at_once() -> None:
    b = batcher(max_bytes=1000, linger=60.0)
    b.add(pending(0, size=600), now=0.0)
    assert b.take(now=0.0, limit=10) == []

    b.add(pending(1, size=400), now=0.0)
    assert [offsets(batch) for batch in b.take(now=0.0, limit=10)] == [[(0, 0), (0, 1)]]


def test_force_takes_what_is_not_yet_due() -> None:
    b = batcher(linger=60.0)
    b.add(pending(0), now=0.0)

    assert b.take(now=0.0, limit=10) == []
    assert len(b.take(now=0.0, limit=10, force=True)) == 1


def test_requeued_entries_go_first_in_their_order_and_are_due_at_once() -> None:
    b = batcher(linger=60.0)
    b.add(pending(3), now=100.0)
    b.add(pending(4), now=100.0)
    b.requeue([pending(1), pending(2)])

    assert len(b) == 4
    (batch,) = b.take(now=100.0, limit=10)
    assert offsets(batch) == [(0, 1), (0, 2), (0, 3), (0, 4)]


def test_unordered_mode_sends_batches_of_a_partition_concurrently() -> None:
    b = batcher(max_entries=2, linger=0.0)
    for offset in range(4):
        b.add(pending(offset, partition=0), now=0.0)
    b.add(pending(0, partition=1), now=0.0)

    batches = b.take(now=0.0, limit=10)
    assert [offsets(batch) for batch in batches] == [
        [(0, 0), (0, 1)],
        [(0, 2), (0, 3)],
        [(1, 0)],
    ]


def test_ordered_mode_keeps_one_batch_in_flight_per_partition() -> None:
    b = batcher(max_entries=2, linger=0.0, ordered=True)
    for offset in range(4):
        b.add(pending(offset, partition=0), now=0.0)
    for offset in range(2):
        b.add(pending(offset, partition=1), now=0.0)

    first = b.take(now=0.0, limit=10)
    assert sorted(offsets(batch) for batch in first) == [[(0, 0), (0, 1)], [(1, 0), (1, 1)]]
    assert b.take(now=1.0, limit=10) == []
    assert b.next_due() is None  # the waiting lane is busy

    p0_batch = next(batch for batch in first if batch.lane == P0)
    b.release(p0_batch)
    (second,) = b.take(now=1.0, limit=10)
    assert offsets(second) == [(0, 2), (0, 3)]


def test_ordered_mode_retries_go_before_newer_entries() -> None:
    b = batcher(max_entries=2, linger=0.0, ordered=True)
    for offset in range(3):
        b.add(pending(offset), now=0.0)
    (batch,) = b.take(now=0.0, limit=10)

    b.release(batch)
    b.requeue(batch.items)
    (again,) = b.take(now=0.0, limit=10)
    assert offsets(again) == [(0, 0), (0, 1)]


def test_drop_removes_the_entries_of_revoked_partitions() -> None:
    b = batcher(max_bytes=1000, linger=60.0)
    b.add(pending(0, partition=0, size=600), now=0.0)
    b.add(pending(0, partition=1, size=300), now=0.0)
    b.add(pending(1, partition=0, size=50), now=0.0)

    dropped = b.drop([P0])
    assert [(p.record.partition, p.record.offset) for p in dropped] == [(0, 0), (0, 1)]
    assert len(b) == 1

    # The dropped bytes no longer count: 300 + 600 stays below the limit.
    b.add(pending(1, partition=1, size=600), now=0.0)
    assert b.take(now=0.0, limit=10) == []
    (batch,) = b.take(now=0.0, limit=10, force=True)
    assert offsets(batch) == [(1, 0), (1, 1)]


def test_ordered_partition_reassigned_waits_for_the_old_assignments_request() -> None:
    b = batcher(max_entries=1, linger=0.0, ordered=True)
    b.add(pending(0), now=0.0)
    (in_flight,) = b.take(now=0.0, limit=10)
    b.add(pending(1), now=0.0)

    assert [p.record.offset for p in b.drop([P0])] == [1]
    b.add(pending(7), now=1.0)  # the partition came back in a later assignment
    # Its old request is still out: two requests of one partition would race.
    assert b.take(now=1.0, limit=10) == []
    b.release(in_flight)  # the old request completes: the partition is free again
    (batch,) = b.take(now=1.0, limit=10)
    assert offsets(batch) == [(0, 7)]


def test_ordered_lane_is_released_only_by_its_own_batch() -> None:
    b = batcher(max_entries=1, linger=0.0, ordered=True)
    b.add(pending(0), now=0.0)
    (old,) = b.take(now=0.0, limit=10)
    b.drop([P0])
    b.release(old)
    b.add(pending(5), now=1.0)
    (current,) = b.take(now=1.0, limit=10)
    b.add(pending(6), now=1.0)
    b.release(old)  # a late, duplicate completion of the earlier batch releases nothing
    assert b.take(now=1.0, limit=10) == []
    b.release(current)
    assert [offsets(x) for x in b.take(now=1.0, limit=10)] == [[(0, 6)]]


def test_ordered_retry_holds_the_lane_until_its_backoff_is_over() -> None:
    b = batcher(max_entries=2, linger=0.0, ordered=True)
    for offset in range(4):
        b.add(pending(offset), now=0.0)
    (first,) = b.take(now=0.0, limit=10)
    b.release(first)
    b.requeue(first.items, hold_until=5.0)  # throttled: back to the front, after 5 s
    assert b.take(now=1.0, limit=10) == []  # the newer entries do not overtake
    assert b.next_due() == 5.0
    (again,) = b.take(now=5.0, limit=10)
    assert offsets(again) == [(0, 0), (0, 1)]


def test_solo_entries_go_alone() -> None:
    b = batcher(linger=0.0)
    b.add(pending(0), now=0.0)
    b.add(pending(1, solo=True), now=0.0)
    b.add(pending(2), now=0.0)
    b.add(pending(3), now=0.0)

    batches = b.take(now=0.0, limit=10)
    assert [offsets(batch) for batch in batches] == [[(0, 0)], [(0, 1)], [(0, 2), (0, 3)]]


def test_requeued_solo_entries_each_get_their_own_request() -> None:
    b = batcher(linger=60.0)
    b.requeue([pending(0, solo=True), pending(1, solo=True), pending(2, solo=True)])

    batches = b.take(now=0.0, limit=10)
    assert [offsets(batch) for batch in batches] == [[(0, 0)], [(0, 1)], [(0, 2)]]


# -- retry queue -------------------------------------------------------------------------


def test_retry_queue_releases_entries_when_due() -> None:
    q = RetryQueue()
    q.schedule(pending(0), due=5.0)
    q.schedule(pending(1), due=1.0)

    assert q.next_due() == 1.0
    assert [p.record.offset for p in q.pop_due(now=0.9)] == []
    assert [p.record.offset for p in q.pop_due(now=1.0)] == [1]
    assert q.next_due() == 5.0
    assert [p.record.offset for p in q.pop_due(now=9.0)] == [0]
    assert q.next_due() is None
    assert len(q) == 0


def test_retry_queue_returns_due_entries_in_partition_order() -> None:
    q = RetryQueue()
    q.schedule(pending(5, partition=1), due=1.0)
    q.schedule(pending(9, partition=0), due=1.0)
    q.schedule(pending(2, partition=0), due=2.0)
    q.schedule(pending(1, partition=1), due=3.0)

    due = q.pop_due(now=2.5)
    assert [(p.record.partition, p.record.offset) for p in due] == [(0, 2), (0, 9), (1, 5)]
    assert [p.record.offset for p in q] == [1]


def test_retry_queue_drops_revoked_partitions() -> None:
    q = RetryQueue()
    q.schedule(pending(0, partition=0), due=1.0)
    q.schedule(pending(0, partition=1), due=2.0)
    q.schedule(pending(1, partition=0), due=3.0)

    dropped = q.drop([P0])
    assert sorted(p.record.offset for p in dropped) == [0, 1]
    assert len(q) == 1
    assert q.next_due() == 2.0
    assert [(p.record.partition, p.record.offset) for p in q.pop_due(now=10.0)] == [(1, 0)]
