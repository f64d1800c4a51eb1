"""A client-side rate limit: a token bucket of entries per second, per process.

After an outage the backlog would otherwise go out as fast as the publisher can send it and
throttle every other producer in the account (PutPartnerEvents' quota is per account and
region). A batch may start when the bucket holds at least one token; it then takes as many
tokens as it has entries, so the bucket can go briefly into debt by less than one batch and
the average rate is exact.

The rate can change while running (:meth:`RateLimiter.set_rate`): a budget for the whole
consumer group is shared by the replicas in proportion to the partitions each owns
(:func:`group_share`), so it stays right as replicas come and go. The time batches spend
waiting for tokens is accumulated (:meth:`RateLimiter.take_waited`), to tell
self-throttling from the service's throttling.

Pure: the caller passes the clock in.
"""

from __future__ import annotations

# Refills are computed in floating point: a bucket a rounding error short of a token counts
# as full, or the time to wait for it (less than a nanosecond) could never pass.
_EPSILON = 1e-9


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._tokens = self.burst
        self._updated: float | None = None
        self._blocked_since: float | None = None
        self._waited = 0.0

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def ready(self, now: float) -> bool:
        """May a batch start now? A "no" starts a wait that the next "yes" ends."""
        if self.unlimited:
            return True
        self._refill(now)
        if self._tokens >= 1 - _EPSILON:
            if self._blocked_since is not None:
                self._waited += now - self._blocked_since
                self._blocked_since = None
            return True
        if self._blocked_since is None:
            self._blocked_since = now
        return False

    def take_waited(self, now: float) -> float:
        """Seconds spent waiting for tokens since the last call (a wait in progress counts
        up to ``now``)."""
        waited = self._waited
        if self._blocked_since is not None:
            waited += now - self._blocked_since
            self._blocked_since = now
        self._waited = 0.0
        return waited

    def set_rate(self, rate: float, now: float) -> None:
        """Change the rate from ``now`` on; tokens earned so far keep the old rate."""
        if rate == self.rate:
            return
        self._refill(now)
        self.rate = rate
        self.burst = max(rate, 1.0)
        self._tokens = min(self._tokens, self.burst)

    def spend(self, entries: int, now: float) -> None:
        if self.unlimited:
            return
        self._refill(now)
        self._tokens -= entries

    def next_ready(self, now: float) -> float | None:
        """When the next batch may start (None: now, or no limit)."""
        if self.unlimited:
            return None
        self._refill(now)
        if self._tokens >= 1 - _EPSILON:
            return None
        return now + (1 - self._tokens) / self.rate


def group_share(budget: float, assigned: int, total: int | None, process_cap: float = 0.0) -> float:
    """This replica's part of a group-wide ``budget``: in proportion to the partitions it
    owns out of ``total`` (the partitions of the subscribed topics; None while unknown,
    then the whole budget). Never zero, which would mean no limit; never above a
    per-process cap when one is set. Without a budget, the per-process cap (0: none)."""
    if budget <= 0:
        return process_cap
    share = budget if not total else budget * min(assigned, total) / total
    rate = max(share, 1.0)
    return min(rate, process_cap) if process_cap > 0 else rate
