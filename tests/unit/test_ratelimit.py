from __future__ import annotations

import pytest

from kafka_eventbridge.ratelimit import RateLimiter


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
