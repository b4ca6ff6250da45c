"""
State a plugin keeps beyond one request: ``context.store``.

A plugin instance lives as long as one configuration generation, and a
plugin configured globally and overridden on a route has two instances; a
counter kept in an attribute is therefore reset by every reload and split
between instances.  What must last (quotas, counters, flags) goes into the
plugin's store: a small key-value and counter store, the same for every
instance of that plugin (keys are prefixed with the plugin's name), that
outlives reloads, on the backends of the rate limiter:

* ``memory``: this process, bounded (least recently used keys are dropped
  beyond ``max_keys``), kept across reloads;
* ``redis://...``: shared by every gateway process and node using that Redis.

The interface is asynchronous on purpose: every operation returns a
`Deferred` (``await`` it in an ``async def`` hook), even where the answer is
known at once (the memory backend's Deferreds have already fired, so a
synchronous hook costs no reactor turn), so that a backend owned by another
process (a Redis server, or a gateway supervisor's host-wide store reached
over a pipe) implements the same `StoreBackend`: string keys, string values,
integer counters, expiries in seconds, one round trip per operation, and
no operation that needs a lock held between two calls.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, List, Optional, Protocol, Tuple

from twisted.internet.defer import Deferred, fail, succeed

__all__ = ["MemoryStore", "PluginStore", "StoreBackend", "StoreUnavailable"]


class StoreUnavailable(Exception):
    """The store could not answer (Redis down, no reply in time).  Decide whether your plugin fails open or closed."""


class StoreBackend(Protocol):
    """
    What a store backend implements: the memory and Redis backends here, and
    whatever serves a gateway's worker processes host-wide.  Keys arrive
    already prefixed (``<key_prefix><plugin>:<key>``); values are strings
    (the `PluginStore` encodes JSON).  Every method returns a Deferred, which
    fails with `StoreUnavailable` when the backend cannot answer, or with
    `ValueError` when ``incr`` finds a value that is not an integer.
    """

    name: str

    def get(self, key: str) -> "Deferred[Optional[str]]":
        """The value, or None when absent or expired."""

    def set(self, key: str, value: str, ttl: Optional[float]) -> "Deferred[None]":
        """Store `value`; it expires `ttl` seconds from now, or never (``None``: any former expiry is dropped)."""

    def incr(self, key: str, amount: int, ttl: Optional[float]) -> "Deferred[int]":
        """
        Add `amount` to the integer at `key` (0 when absent) atomically and
        fire with the new value.  When `ttl` is given and the key has no
        expiry yet (a new counter), it expires `ttl` seconds from now; an
        existing expiry is kept.
        """

    def delete(self, key: str) -> "Deferred[bool]":
        """Remove `key`; whether it was there."""


class MemoryStore:
    """
    The ``memory`` backend: this process only, on the gateway's clock.
    One per gateway (it lives in `twistgate.generation.Shared`, so reloads
    keep it).  At most ``max_keys`` keys: beyond, the least recently used
    are forgotten; expired keys go on access and from the cold end.
    """

    name = "memory"

    def __init__(self, clock: Any, *, max_keys: int = 100_000) -> None:
        self._clock = clock
        self.max_keys = max_keys
        self._entries: "OrderedDict[str, List[Any]]" = OrderedDict()  # key -> [value, expires or None]
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: str) -> Optional[List[Any]]:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= self._clock.seconds():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _trim(self) -> None:
        entries, now = self._entries, self._clock.seconds()
        for _ in range(2):  # amortised sweep from the cold end
            if not entries:
                break
            key, entry = next(iter(entries.items()))
            if entry[1] is None or entry[1] > now:
                break
            del entries[key]
        while len(entries) > self.max_keys:
            entries.popitem(last=False)
            self.evicted += 1

    def get(self, key: str) -> "Deferred[Optional[str]]":
        entry = self._live(key)
        return succeed(None if entry is None else entry[0])

    def set(self, key: str, value: str, ttl: Optional[float]) -> "Deferred[None]":
        expires = None if ttl is None else self._clock.seconds() + ttl
        self._entries[key] = [value, expires]
        self._entries.move_to_end(key)
        self._trim()
        return succeed(None)

    def incr(self, key: str, amount: int, ttl: Optional[float]) -> "Deferred[int]":
        entry = self._live(key)
        if entry is None:
            entry = self._entries[key] = ["0", None]
        try:
            value = int(entry[0]) + amount
        except ValueError:
            return fail(ValueError(f"the value at {key!r} is not an integer"))
        entry[0] = str(value)
        if ttl is not None and entry[1] is None:
            entry[1] = self._clock.seconds() + ttl
        self._trim()
        return succeed(value)

    def delete(self, key: str) -> "Deferred[bool]":
        return succeed(self._entries.pop(key, None) is not None)

    def describe(self) -> Tuple[Tuple[str, Any], ...]:
        return (("backend", "memory"), ("keys", len(self._entries)), ("max_keys", self.max_keys))


_ABSENT = object()


class PluginStore:
    """
    A plugin's own store (``context.store``): its keys, on the gateway's
    store backend, shared by every instance of the plugin and kept across
    reloads.  Values are anything JSON can hold; counters are integers.
    Every method returns a Deferred (``await`` it).

    :ivar namespace: the plugin's name: keys are stored as ``NAME:key``.
    """

    __slots__ = ("backend", "namespace", "_prefix")

    def __init__(self, backend: StoreBackend, namespace: str) -> None:
        self.backend = backend
        self.namespace = namespace
        self._prefix = f"{namespace}:"

    def __repr__(self) -> str:
        return f"<PluginStore {self.namespace} on {self.backend.name}>"

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise TypeError(f"store keys are non-empty strings, not {key!r}")
        return self._prefix + key

    def get(self, key: str, default: Any = None) -> "Deferred[Any]":
        """The value at `key`, or `default` when absent or expired."""
        return self.backend.get(self._key(key)).addCallback(
            lambda text: default if text is None else json.loads(text)
        )

    def set(self, key: str, value: Any, *, ttl: Optional[float] = None) -> "Deferred[None]":
        """
        Store `value` (str, int, float, bool, list, dict: JSON) at `key`,
        expiring after `ttl` seconds, or never.

        :raises TypeError: the value is not JSON (raised at once).
        """
        if value is None:
            raise TypeError("None cannot be stored (get() gives None for absent keys); delete the key instead")
        return self.backend.set(self._key(key), json.dumps(value, separators=(",", ":")), _ttl(ttl))

    def incr(self, key: str, amount: int = 1, *, ttl: Optional[float] = None) -> "Deferred[int]":
        """
        Add `amount` (negative to subtract) to the counter at `key`, created
        at 0, atomically across every instance, process and node sharing the
        backend; fires with the new value.  `ttl`: a new counter expires
        that many seconds after its first increment (a window).
        """
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise TypeError(f"amount must be an integer, not {amount!r}")
        return self.backend.incr(self._key(key), amount, _ttl(ttl))

    def delete(self, key: str) -> "Deferred[bool]":
        """Remove `key`; fires with whether it was there."""
        return self.backend.delete(self._key(key))


def _ttl(ttl: Optional[float]) -> Optional[float]:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    return float(ttl)
