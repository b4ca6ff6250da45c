"""
Choosing a target of an upstream.

Smooth weighted round robin (NGINX's algorithm): with weights 3:1 the order
is a a b a, interleaved rather than bursts, and equal weights reduce to plain
rotation.  The other strategies of the contract arrive with the resilience
work; they will share this `choose()` interface.
"""

from __future__ import annotations

from typing import Generic, List, Optional, Sequence, TypeVar

T = TypeVar("T")


class RoundRobin(Generic[T]):
    """Smooth weighted round robin over `targets` with integer `weights`."""

    def __init__(self, targets: Sequence[T], weights: Optional[Sequence[int]] = None) -> None:
        if not targets:
            raise ValueError("an upstream needs at least one target")
        self._targets = list(targets)
        self._weights = list(weights) if weights is not None else [1] * len(self._targets)
        self._total = sum(self._weights)
        self._current = [0] * len(self._targets)
        self._uniform = len(set(self._weights)) == 1
        self._next = 0

    def choose(self) -> T:
        targets = self._targets
        if self._uniform:
            i = self._next
            self._next = (i + 1) % len(targets)
            return targets[i]
        current: List[int] = self._current
        best = 0
        for i, w in enumerate(self._weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return targets[best]
