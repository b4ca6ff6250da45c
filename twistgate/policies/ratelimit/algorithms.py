"""
The three rate-limit algorithms, as pure functions over a small state.

The Redis backend runs the same arithmetic in Lua (`twistgate.policies.ratelimit.script`)
on the Redis server's clock.  To make the two backends give the same answers
for the same traffic, both:

* count time in whole microseconds (integers, exact in a double below 2**53);
* do the float arithmetic in the same order (Lua numbers and Python floats
  are both IEEE doubles, so identical operations give identical bits);
* never consume anything when a request is denied, and consume from every
  limit of a route only when all of them allow the request;
* treat a state whose expiry has passed exactly like a fresh one (expiry is
  set only once the state has become equivalent to a fresh one), so a key
  dropped early by the memory LRU or by Redis `PEXPIRE` never changes an
  answer.

States (tuples, so the memory backend can keep them without copying):

* token bucket: ``(tokens: float, last: int µs)``; fresh = full bucket.
* fixed window: ``(window index: int, count: int)``; fresh = nothing counted.
* sliding window: a `collections.deque` of the µs timestamps of the requests
  allowed in the last period (an exact sliding log); fresh = empty.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Deque, List, Optional, Sequence, Tuple

import attrs

TOKEN_BUCKET = 1
FIXED_WINDOW = 2
SLIDING_WINDOW = 3

ALGORITHMS = {"token_bucket": TOKEN_BUCKET, "fixed_window": FIXED_WINDOW, "sliding_window": SLIDING_WINDOW}

#: Token-bucket state is kept this long after it is full again, so that the
#: float refill is certainly capped at the burst when the state expires
#: (see the module docstring); 1 ms is many orders of magnitude above the
#: rounding error.
EXPIRY_SLACK_US = 1000

MICROS = 1_000_000


@attrs.frozen
class Limit:
    """One limit in backend units: ``count`` requests per ``period_us``."""

    algorithm: int
    count: int
    period_us: int
    burst: int  # bucket capacity for the token bucket; == count otherwise

    def args(self) -> Tuple[str, str, str, str]:
        """The Lua script's four arguments for this limit."""
        return (str(self.algorithm), str(self.count), str(self.period_us), str(self.burst))


@attrs.define
class Outcome:
    """
    One limit's answer for one request (made per request: slotted, not frozen;
    do not change it).  It is also the whole decision of a route with one
    limit (``allowed`` and ``outcomes`` as a `Decision`'s): the memory
    backend answers such a route with it, an allocation fewer per request.
    """

    allowed: bool
    remaining: int  # requests left (after this one, if it was allowed)
    reset_us: int  # until the quota is fully available again
    retry_us: int  # until a denied request would be allowed; 0 when allowed

    @property
    def outcomes(self) -> Tuple["Outcome", ...]:
        return (self,)


@attrs.define
class Decision:
    """The answer for one request over every limit of its route (made per request: slotted, not frozen)."""

    allowed: bool
    outcomes: Tuple[Outcome, ...]


class _Step:
    """
    A limit's view of one request before anything is written: ``allowed``,
    ``commit()`` -> (new state, expires_us, `Outcome`) when every limit
    allows it, ``denied()`` -> the `Outcome` as it stands, unspent (made only
    when some limit refuses).  One small object per limit and request, no
    closures.
    """

    __slots__ = ("allowed",)

    def commit(self) -> Tuple[Any, int, Outcome]:
        raise NotImplementedError

    def denied(self) -> Outcome:
        raise NotImplementedError


def _ceil_int(value: float) -> int:
    return int(math.ceil(value))


class _TokenBucketStep(_Step):
    __slots__ = ("tokens", "new_last", "now", "limit")

    def __init__(self, tokens: float, new_last: int, now: int, limit: Limit) -> None:
        self.allowed = tokens >= 1.0
        self.tokens = tokens
        self.new_last = new_last
        self.now = now
        self.limit = limit

    def commit(self) -> Tuple[Tuple[float, int], int, Outcome]:
        # Refilled already and new_last >= now: token_bucket_alone refills
        # nothing more and spends exactly as a separate step would.
        spent = token_bucket_alone(self.limit, (self.tokens, self.new_last), self.now)
        assert spent is not None  # (allowed)
        return spent

    def denied(self) -> Outcome:
        tokens, limit = self.tokens, self.limit
        per, count = limit.period_us, limit.count
        return Outcome(
            False,
            int(math.floor(tokens)),
            _ceil_int((float(limit.burst) - tokens) * per / count),
            _ceil_int((1.0 - tokens) * per / count),
        )


def _refill(limit: Limit, state: Optional[Tuple[float, int]], now: int) -> Tuple[float, int]:
    """The bucket's tokens now, and its last time (`token_bucket_alone` has the same lines, inline: keep them alike)."""
    burst = float(limit.burst)
    if state is None:
        return burst, now
    tokens, last = state
    elapsed = now - last
    if elapsed > 0:  # a clock that went back refills nothing
        tokens = tokens + float(elapsed) * limit.count / limit.period_us
        if tokens > burst:  # min(), without its call (per request)
            tokens = burst
    return tokens, last


def token_bucket(limit: Limit, state: Optional[Tuple[float, int]], now: int) -> _Step:
    tokens, last = _refill(limit, state, now)
    return _TokenBucketStep(tokens, max(last, now), now, limit)


def token_bucket_alone(limit: Limit, state: Optional[Tuple[float, int]], now: int) -> Optional[Tuple[Any, int, Outcome]]:
    """
    A route's only limit, a token bucket: `token_bucket` and ``commit()`` in
    one call, with no step object (the hot path of the memory backend);
    None when the request is refused (`token_bucket` then tells why).
    """
    burst = float(limit.burst)
    if state is None:
        tokens, last = burst, now
    else:  # _refill, without its call
        tokens, last = state
        elapsed = now - last
        if elapsed > 0:
            tokens = tokens + float(elapsed) * limit.count / limit.period_us
            if tokens > burst:
                tokens = burst
    if tokens < 1.0:
        return None
    left = tokens - 1.0
    reset = math.ceil((burst - left) * limit.period_us / limit.count)  # an int, as _ceil_int gives
    return (left, last if last > now else now), now + reset + EXPIRY_SLACK_US, Outcome(True, math.floor(left), reset, 0)


class _FixedWindowStep(_Step):
    __slots__ = ("window", "counted", "end", "now", "count")

    def __init__(self, window: int, counted: int, end: int, now: int, count: int) -> None:
        self.allowed = counted < count
        self.window = window
        self.counted = counted
        self.end = end
        self.now = now
        self.count = count

    def commit(self) -> Tuple[Tuple[int, int], int, Outcome]:
        end, now = self.end, self.now
        return (self.window, self.counted + 1), end, Outcome(True, self.count - self.counted - 1, end - now, 0)

    def denied(self) -> Outcome:
        end, now = self.end, self.now
        return Outcome(False, max(0, self.count - self.counted), end - now, end - now)


def fixed_window(limit: Limit, state: Optional[Tuple[int, int]], now: int) -> _Step:
    per = limit.period_us
    window = int(math.floor(float(now) / per))
    counted = state[1] if state is not None and state[0] == window else 0
    return _FixedWindowStep(window, counted, (window + 1) * per, now, limit.count)


class _SlidingWindowStep(_Step):
    __slots__ = ("log", "now", "per", "count")

    def __init__(self, log: Deque[int], now: int, per: int, count: int) -> None:
        self.allowed = len(log) < count
        self.log = log
        self.now = now
        self.per = per
        self.count = count

    def commit(self) -> Tuple[Deque[int], int, Outcome]:
        log, per = self.log, self.per
        log.append(self.now)
        return log, log[-1] + per, Outcome(True, self.count - len(log), log[-1] + per - self.now, 0)

    def denied(self) -> Outcome:
        log, per, now = self.log, self.per, self.now
        reset = log[-1] + per - now if log else 0
        retry = log[0] + per - now if log else 0
        return Outcome(False, max(0, self.count - len(log)), reset, retry)


def sliding_window(limit: Limit, state: Optional[Deque[int]], now: int) -> _Step:
    per = limit.period_us
    log: Deque[int] = state if state is not None else deque()
    cutoff = now - per
    while log and log[0] <= cutoff:
        log.popleft()
    return _SlidingWindowStep(log, now, per, limit.count)


STEPS = {TOKEN_BUCKET: token_bucket, FIXED_WINDOW: fixed_window, SLIDING_WINDOW: sliding_window}


def decide(
    limits: Sequence[Limit], states: Sequence[Any], now: int
) -> Tuple[Decision, List[Optional[Tuple[Any, int]]]]:
    """
    Decide one request against every limit of its route.

    :param states: each limit's current state (None for fresh or expired).
    :return: the decision, and per limit ``(new state, expires_us)`` to
        store, or None where nothing is to be written.
    """
    steps = [STEPS[limit.algorithm](limit, state, now) for limit, state in zip(limits, states)]
    allowed = True
    for step in steps:
        if not step.allowed:
            allowed = False
            break
    if allowed:
        writes: List[Optional[Tuple[Any, int]]] = []
        outcomes = []
        for step in steps:
            new_state, expires, outcome = step.commit()
            writes.append((new_state, expires))
            outcomes.append(outcome)
        return Decision(True, tuple(outcomes)), writes
    outcomes = []
    for step in steps:
        outcome = step.denied()
        if step.allowed:
            # Not the limit that refused: report it as it stands, unspent.
            outcome = attrs.evolve(outcome, allowed=True, retry_us=0)
        outcomes.append(outcome)
    return Decision(False, tuple(outcomes)), [None] * len(steps)
