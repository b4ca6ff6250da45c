"""
Request collapsing: one upstream fetch for concurrent misses of one key.

The first miss takes a `Lease`; later misses of the same key wait on it and
look the store up again when it is released — after the leader's response
was stored (they get a hit) or found unstorable, failed, or its client left
(they go upstream themselves, without waiting again).  Every path that ends
a leader's exchange releases its lease; releasing twice is harmless.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, List, Optional

from twisted.internet.defer import Deferred


class Lease:
    __slots__ = ("key", "_table", "_waiters", "released")

    def __init__(self, key: Hashable, table: "Dict[Hashable, Lease]") -> None:
        self.key = key
        self._table = table
        self._waiters: List[Deferred[None]] = []
        self.released = False

    def wait(self, clock: Any, timeout: float) -> "Deferred[None]":
        """Fires when the lease is released, or after `timeout` seconds (then the waiter goes alone)."""
        d: Deferred[None] = Deferred()
        self._waiters.append(d)

        def give_up() -> None:
            if d in self._waiters:
                self._waiters.remove(d)
                d.callback(None)

        timer = clock.callLater(timeout, give_up)
        d.addBoth(_cancel_timer, timer)
        return d

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._table.get(self.key) is self:
            del self._table[self.key]
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


def _cancel_timer(result: Any, timer: Any) -> Any:
    if timer.active():
        timer.cancel()
    return result


class Leases:
    """The fetches in flight, by key."""

    def __init__(self) -> None:
        self._inflight: Dict[Hashable, Lease] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def acquire(self, key: Hashable) -> Optional[Lease]:
        """A new lease, or None when another fetch of `key` is in flight."""
        if key in self._inflight:
            return None
        lease = self._inflight[key] = Lease(key, self._inflight)
        return lease

    def holder(self, key: Hashable) -> Optional[Lease]:
        return self._inflight.get(key)
