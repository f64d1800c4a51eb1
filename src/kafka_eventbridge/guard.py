"""The dead-letter ratio guard: a bad deploy stops the bridge instead of dumping a stream.

When more than ``max_ratio`` of the last ``window`` resolved records were dead-lettered,
the cause is almost never the records: it is a mapping or a setting that changed. The
guard only judges a full window, so a handful of bad records early on never trips it.
"""

from __future__ import annotations

from collections import deque


class DeadLetterGuard:
    """Counts resolved records and remembers the positions of the dead-lettered ones among
    them: delivered records are counted in bulk (the loop settles them a batch at a time),
    and only a dead letter costs an entry."""

    def __init__(self, max_ratio: float, window: int) -> None:
        self.max_ratio = max_ratio
        self.window = window
        self._seen = 0  # records resolved so far
        self._dead: deque[int] = deque()  # positions of dead letters among the last window

    def delivered(self, count: int) -> None:
        if self.max_ratio > 0:
            self._seen += count
            self._slide()

    def dead_lettered(self) -> None:
        if self.max_ratio > 0:
            self._seen += 1
            self._dead.append(self._seen)
            self._slide()

    def _slide(self) -> None:
        oldest = self._seen - self.window
        dead = self._dead
        while dead and dead[0] <= oldest:
            dead.popleft()

    @property
    def ratio(self) -> float:
        judged = min(self._seen, self.window)
        return len(self._dead) / judged if judged else 0.0

    @property
    def tripped(self) -> bool:
        return self.max_ratio > 0 and self._seen >= self.window and self.ratio > self.max_ratio
