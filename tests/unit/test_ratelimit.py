from __future__ import annotations

import pytest

from kafka_eventbridge.ratelimit import RateLimiter, group_share


def sent_in(limiter: RateLimiter, seconds: float, batch: int, step: float = 0.001) -> int:
    """Entries a greedy sender gets through in ``seconds`` of simulated time."""
    sent, now = 0, 0.0
    while now < seconds:
        while limiter.ready(now):
            limiter.spend(batch, now)
            sent += batch
        now += step
    return sent


@pytest.mark.parametrize(("rate", "batch"), [(100, 20), (1000, 10), (28_000, 20), (5, 20)])
def test_average_rate_holds_whatever_the_batch_size(rate: int, batch: int) -> None:
    limiter = RateLimiter(rate)
    seconds = 10.0
    sent = sent_in(limiter, seconds, batch)
    # The initial burst (one second's worth) plus the steady rate, within one batch.
    assert rate * seconds <= sent <= rate * seconds + limiter.burst + batch


def test_zero_means_unlimited() -> None:
    limiter = RateLimiter(0)
    assert limiter.unlimited
    for _ in range(1000):
        assert limiter.ready(0.0)
        limiter.spend(20, 0.0)
    assert limiter.next_ready(0.0) is None


def test_next_ready_says_when_the_debt_is_paid() -> None:
    limiter = RateLimiter(10, burst=10)
    limiter.spend(30, 0.0)  # 10 tokens - 30 = -20 in debt
    assert not limiter.ready(0.0)
    assert limiter.next_ready(0.0) == pytest.approx(2.1)
    assert not limiter.ready(2.0)
    assert limiter.ready(2.1)


def test_time_spent_waiting_for_tokens_is_counted() -> None:
    limiter = RateLimiter(10)  # one token every 0.1 s, a burst of 10
    limiter.spend(10, 0.0)
    assert not limiter.ready(0.0)  # the wait starts
    assert limiter.ready(0.1)  # one token back: the wait ends after 0.1 s
    assert limiter.take_waited(0.2) == pytest.approx(0.1)
    assert limiter.take_waited(0.3) == 0.0  # nothing since the last reading


def test_a_wait_in_progress_counts_up_to_the_reading() -> None:
    limiter = RateLimiter(1)
    limiter.spend(1, 0.0)
    assert not limiter.ready(0.0)
    assert limiter.take_waited(0.4) == pytest.approx(0.4)
    assert limiter.ready(1.0)
    assert limiter.take_waited(1.0) == pytest.approx(0.6)


def test_unlimited_never_waits() -> None:
    limiter = RateLimiter(0)
    assert limiter.ready(0.0)
    assert limiter.take_waited(5.0) == 0.0


def test_a_new_rate_applies_from_then_on() -> None:
    limiter = RateLimiter(100)
    limiter.spend(100, 0.0)
    limiter.set_rate(10, 1.0)  # a second at 100/s refilled the bucket, capped at the new burst
    assert limiter.burst == 10
    assert sent_in(limiter, 10.0, 1) <= 10 * 10 + 10 + 1


@pytest.mark.parametrize(
    ("budget", "assigned", "total", "cap", "expected"),
    [
        (1000, 3, 12, 0, 250),  # a quarter of the partitions, a quarter of the budget
        (1000, 12, 12, 0, 1000),  # the only replica
        (1000, 0, 12, 0, 1.0),  # a standby: never 0, which would mean "no limit"
        (1000, 6, None, 0, 1000),  # partitions not known yet: the whole budget
        (1000, 6, 12, 300, 300),  # the per-process cap still applies
        (0, 6, 12, 300, 300),  # no budget: the per-process cap alone
        (0, 6, 12, 0, 0),  # neither: no limit
    ],
)
def test_group_budget_is_shared_by_partitions(
    budget: float, assigned: int, total: int | None, cap: float, expected: float
) -> None:
    assert group_share(budget, assigned, total, cap) == pytest.approx(expected)


def test_group_shares_add_up_to_the_budget_whatever_the_replica_count() -> None:
    partitions = 12
    for replicas in (1, 2, 3, 5, 12):
        counts = [len(range(r, partitions, replicas)) for r in range(replicas)]
        assert sum(group_share(2400, n, partitions) for n in counts) == pytest.approx(2400)
