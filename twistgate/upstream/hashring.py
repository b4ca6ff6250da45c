"""
A consistent hash ring (Karger et al., as in ketama): each target owns
``POINTS * weight`` points on a 64-bit circle, a key goes to the owner of the
first point at or after its hash.  Removing a target hands only its points'
keys to their next owners, so only its share of the keys moves; a target that
is merely unavailable is skipped the same way, and gets its keys back when
it returns.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from typing import Callable, Generic, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")

#: Points per unit of weight: enough for an even spread (within a few per cent).
POINTS = 160


def hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing(Generic[T]):
    """The ring over `targets`, each named by ``name(target)`` and weighted by ``target.weight``."""

    def __init__(self, targets: Sequence[T], name: Callable[[T], str]) -> None:
        points: List[Tuple[int, int]] = []
        self._targets = list(targets)
        for index, target in enumerate(self._targets):
            label = name(target)
            for i in range(POINTS * max(1, getattr(target, "weight", 1))):
                points.append((hash64(f"{label}#{i}".encode("utf-8")), index))
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [i for _, i in points]

    def __len__(self) -> int:
        return len(self._targets)

    def lookup(self, key: bytes, accept: Optional[Callable[[T], bool]] = None) -> Optional[T]:
        """The owner of `key`; walking on past owners that `accept` refuses."""
        if not self._hashes:
            return None
        start = bisect_left(self._hashes, hash64(key))
        count = len(self._hashes)
        owners, targets = self._owners, self._targets
        if accept is None:
            return targets[owners[start % count]]
        refused = set()
        for step in range(count):
            index = owners[(start + step) % count]
            if index in refused:
                continue
            target = targets[index]
            if accept(target):
                return target
            refused.add(index)
            if len(refused) == len(targets):
                return None
        return None
