"""The dead-letter ratio guard: a bad deploy stops the bridge instead of dumping a stream.

When more than ``max_ratio`` of the last ``window`` resolved records were dead-lettered,
the cause is almost never the records: it is a mapping or a setting that changed. The
guard only judges a full window, so a handful of bad records early on never trips it.
"""

from __future__ import annotations

from collections import deque


class DeadLetterGuard:
    def __init__(self, max_ratio: float, window: int) -> None:
        self.max_ratio = max_ratio
        self.window = window
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._dead = 0

    def record(self, dead: bool) -> None:
        if self.max_ratio <= 0:
            return
        if len(self._outcomes) == self.window and self._outcomes[0]:
            self._dead -= 1
        self._outcomes.append(dead)
        self._dead += dead

    @property
    def ratio(self) -> float:
        return self._dead / len(self._outcomes) if self._outcomes else 0.0

    @property
    def tripped(self) -> bool:
        return (
            self.max_ratio > 0
            and len(self._outcomes) == self.window
            and self.ratio > self.max_ratio
        )
