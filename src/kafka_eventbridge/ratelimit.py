"""A client-side rate limit: a token bucket of entries per second, per process.

After an outage the backlog would otherwise go out as fast as the publisher can send it and
throttle every other producer in the account (PutPartnerEvents' quota is per account and
region). A batch may start when the bucket holds at least one token; it then takes as many
tokens as it has entries, so the bucket can go briefly into debt by less than one batch and
the average rate is exact.

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

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def ready(self, now: float) -> bool:
        """May a batch start now?"""
        if self.unlimited:
            return True
        self._refill(now)
        return self._tokens >= 1 - _EPSILON

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
