"""
The in-process rate-limit backend: exact for one gateway process, bounded in
memory whatever the number of distinct keys.

States live in one LRU (an `OrderedDict`) with at most ``max_keys`` entries.
Every entry carries the time after which it is equivalent to a fresh state
(see `twistgate.policies.ratelimit.algorithms`), so dropping it then changes no
answer: each decision also drops a couple of expired entries from the cold
end, so idle keys go away by themselves; and when more than ``max_keys``
keys are live at once, the least recently used is forgotten (which can only
let that key through sooner; size ``max_keys`` above the number of clients
active within one period).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, List, Optional, Sequence, Tuple

from twistgate.policies.ratelimit.algorithms import MICROS, STEPS, TOKEN_BUCKET, Decision, Limit, Outcome, decide, token_bucket_alone

#: Expired entries dropped from the cold end per decision (amortised sweep).
_SWEEP = 2


class MemoryBackend:
    """Rate-limit state in this process, on the injected clock."""

    name = "memory"

    def __init__(self, clock: Any, *, max_keys: int = 100_000) -> None:
        self._clock = clock
        self.max_keys = max_keys
        # key -> [state, expires_us]
        self._entries: "OrderedDict[str, List[Any]]" = OrderedDict()
        self.evicted = 0  # live keys forgotten because the LRU was full

    def __len__(self) -> int:
        return len(self._entries)

    def now_us(self) -> int:
        return round(self._clock.seconds() * MICROS)  # (an int: round() without digits gives one)

    def decide(self, keys: Sequence[str], limits: Sequence[Limit], now_us: Optional[int] = None) -> Decision:
        """Decide synchronously (a value, not a Deferred: no reactor turn)."""
        now = self.now_us() if now_us is None else now_us
        if len(keys) == 1:
            outcome = self.decide_one(keys[0], limits[0], now)
            return Decision(outcome.allowed, (outcome,))
        entries = self._entries
        states: List[Any] = []
        for key in keys:
            entry = entries.get(key)
            if entry is not None and entry[1] <= now:
                del entries[key]
                entry = None
            states.append(entry[0] if entry is not None else None)
        decision, writes = decide(limits, states, now)
        for key, write in zip(keys, writes):
            if write is not None:
                entry = entries.get(key)
                if entry is None:
                    entries[key] = [write[0], write[1]]
                else:
                    entry[0], entry[1] = write
                    entries.move_to_end(key)
            elif key in entries:
                entries.move_to_end(key)
        self._trim(now)
        return decision

    def decide_one(self, key: str, limit: Limit, now: Optional[int] = None) -> Outcome:
        """
        `decide` for a route with one limit (the usual case), without the lists a
        route with several needs: the limit's `Outcome`, which is the decision.
        """
        if now is None:
            # now_us() without its call, and round() as the method it calls (the builtin looks it up each time)
            now = (self._clock.seconds() * MICROS).__round__()
        entries = self._entries
        try:
            entry = entries[key]  # (a lookup without a method call; a missing key is once per key)
        except KeyError:
            entry = None
        if entry is not None and entry[1] <= now:
            del entries[key]
            entry = None
        state = entry[0] if entry is not None else None
        step = None
        if limit.algorithm == TOKEN_BUCKET:
            spent = token_bucket_alone(limit, state, now)
        else:
            step = STEPS[limit.algorithm](limit, state, now)
            spent = step.commit() if step.allowed else None
        if spent is not None:
            state, expires, outcome = spent
            if entry is None:
                entries[key] = [state, expires]
            else:
                entry[0] = state
                entry[1] = expires
                entries.move_to_end(key)
        else:
            if step is None:
                step = STEPS[limit.algorithm](limit, state, now)  # pure for a token bucket: the same answer again
            outcome = step.denied()
            if entry is not None:
                entries.move_to_end(key)
        # _trim, called only when it has something to do: the usual request
        # finds the coldest entry still live and the LRU not full.
        if entries and (entries[next(iter(entries))][1] <= now or len(entries) > self.max_keys):
            self._trim(now)
        return outcome

    def _trim(self, now: int) -> None:
        entries = self._entries
        for _ in range(_SWEEP):
            if not entries:
                break
            key = next(iter(entries))
            if entries[key][1] > now:
                break
            del entries[key]
        while len(entries) > self.max_keys:
            entries.popitem(last=False)
            self.evicted += 1

    def sweep(self) -> int:
        """Drop every expired entry now (the amortised sweep does this gradually)."""
        now = self.now_us()
        expired = [key for key, entry in self._entries.items() if entry[1] <= now]
        for key in expired:
            del self._entries[key]
        return len(expired)

    def describe(self) -> Tuple[Tuple[str, Any], ...]:
        return (("backend", "memory"), ("keys", len(self._entries)), ("max_keys", self.max_keys))
