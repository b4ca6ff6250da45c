"""
Host-wide rate limits on the memory backend.

With workers, ``backend: memory`` still means one limit for the host, as
nginx's shared zones do: the supervisor keeps the only `MemoryBackend`, and
a worker asks it for each decision over the control channel (`Decide`).
That costs one round trip on a local socket per decision (measured in
docs/benchmarks.md), never blocks either reactor, and is exact: the
supervisor decides one request at a time.  If the supervisor cannot
answer (it is gone, or busier than ``timeout``), the route's
``on_backend_error`` applies, as for Redis.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from twistgate.policies.ratelimit.algorithms import Decision, Limit, Outcome
from twistgate.policies.ratelimit.memory import MemoryBackend
from twistgate.policies.ratelimit.redis_backend import BackendUnavailable
from twistgate.workers.control import Decide


def encode_limits(limits: Sequence[Limit]) -> List[int]:
    flat: List[int] = []
    for limit in limits:
        flat.extend((limit.algorithm, limit.count, limit.period_us, limit.burst))
    return flat


def decode_limits(flat: Sequence[int]) -> Tuple[Limit, ...]:
    if len(flat) % 4:
        raise ValueError("limits: four integers per limit")
    return tuple(Limit(*flat[i : i + 4]) for i in range(0, len(flat), 4))


def encode_decision(decision: Decision) -> List[int]:
    values = [int(decision.allowed)]
    for o in decision.outcomes:
        values.extend((int(o.allowed), o.remaining, o.reset_us, o.retry_us))
    return values


def decode_decision(values: Sequence[int], count: int) -> Decision:
    if len(values) != 1 + 4 * count:
        raise ValueError(f"expected {1 + 4 * count} values, got {len(values)}")
    outcomes = tuple(
        Outcome(bool(values[i]), values[i + 1], values[i + 2], values[i + 3]) for i in range(1, len(values), 4)
    )
    return Decision(bool(values[0]), outcomes)


class HostLimits:
    """The supervisor's side: the one memory backend of the host."""

    def __init__(self, clock: Any, max_keys: int) -> None:
        self.backend = MemoryBackend(clock, max_keys=max_keys)
        self.decisions = 0

    def decide(self, keys: Sequence[str], limits: Sequence[int]) -> List[int]:
        self.decisions += 1
        return encode_decision(self.backend.decide(list(keys), decode_limits(limits)))

    def resize(self, max_keys: int) -> None:
        """A reload changed ``rate_limiting.max_keys``: the state is kept."""
        self.backend.max_keys = max_keys


class HostBackend:
    """A worker's memory backend: every decision is the supervisor's."""

    name = "memory"

    def __init__(self, link: Any, clock: Any, *, timeout: float = 1.0) -> None:
        """:param link: has ``.protocol``, the AMP connection to the supervisor (None when lost)."""
        self.link = link
        self.clock = clock
        self.timeout = timeout
        self.failures = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def decide(self, keys: Sequence[str], limits: Sequence[Limit], now_us: Optional[int] = None) -> "Deferred[Decision]":
        protocol = self.link.protocol
        if protocol is None:
            self.failures += 1
            return fail(BackendUnavailable("the supervisor is not reachable"))
        d = protocol.callRemote(Decide, keys=list(keys), limits=encode_limits(limits))
        d.addTimeout(self.timeout, self.clock)
        count = len(limits)
        return d.addCallbacks(lambda answer: decode_decision(answer["values"], count), self._failed)

    def _failed(self, failure: Failure) -> Failure:
        self.failures += 1
        return Failure(BackendUnavailable(f"the supervisor did not decide: {failure.getErrorMessage()}"))

    def describe(self) -> Tuple[Tuple[str, Any], ...]:
        return (("backend", "memory"), ("scope", "host (decided by the supervisor)"), ("failures", self.failures))
