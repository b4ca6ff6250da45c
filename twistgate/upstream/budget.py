"""
A retry budget (Finagle's): retries may be at most ``ratio`` of the requests
seen over a sliding ``window``, plus ``min_per_second`` so that a quiet
service can still retry.  When an upstream fails hard, every request failing
and being retried would multiply the load on it; the budget caps the extra
load at the ratio, so retries stop storming.

The window is ten buckets on the injected clock; a bucket's counts age out
as a whole.
"""

from __future__ import annotations

import math
from typing import Any, List

BUCKETS = 10


class RetryBudget:
    """Counts requests and retries over a sliding window; `withdraw()` says whether one more retry fits."""

    __slots__ = ("ratio", "window", "min_per_second", "clock", "_width", "_requests", "_retries", "_slot")

    def __init__(self, ratio: float, window: float, min_per_second: int, clock: Any) -> None:
        self.ratio = ratio
        self.window = window
        self.min_per_second = min_per_second
        self.clock = clock
        self._width = window / BUCKETS
        self._requests: List[int] = [0] * BUCKETS
        self._retries: List[int] = [0] * BUCKETS
        self._slot = self._now_slot()

    def _now_slot(self) -> int:
        return math.floor(self.clock.seconds() / self._width)

    def _advance(self) -> int:
        """Clear the buckets that aged out; the index of the current one."""
        now = self._now_slot()
        gone = now - self._slot
        if gone > 0:
            for step in range(1, min(gone, BUCKETS) + 1):
                i = (self._slot + step) % BUCKETS
                self._requests[i] = 0
                self._retries[i] = 0
            self._slot = now
        return now % BUCKETS

    def deposit(self) -> None:
        """A request was made (its first attempt)."""
        self._requests[self._advance()] += 1

    def withdraw(self) -> bool:
        """Take one retry from the budget, if there is room for it."""
        i = self._advance()
        allowed = self.min_per_second * self.window + self.ratio * sum(self._requests)
        if sum(self._retries) + 1 > allowed:
            return False
        self._retries[i] += 1
        return True

    def snapshot(self) -> dict:
        self._advance()
        return {"requests": sum(self._requests), "retries": sum(self._retries)}
