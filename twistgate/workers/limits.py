"""
Host-wide rate limits on the memory backend.

With workers, ``backend: memory`` still means one limit for the host, as
nginx's shared zones do: the supervisor keeps the only `MemoryBackend`, and
a worker asks it for each decision over the control channel (`Decide`).
Decisions asked in one turn of a worker's reactor go in one message (a
batch), so a decision costs a share of one round trip on a local socket
(measured in docs/benchmarks.md); nothing blocks either reactor, and the
limits are exact: the supervisor decides one request at a time, in order.  If the supervisor cannot
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
        self.batches = 0

    def decide(self, keys: Sequence[str], limits: Sequence[int]) -> List[int]:
        """One request's decision (``limits`` as `encode_limits` makes them)."""
        self.decisions += 1
        return encode_decision(self.backend.decide(list(keys), decode_limits(limits)))

    def decide_batch(self, sizes: Sequence[int], keys: Sequence[str], limits: Sequence[int]) -> List[int]:
        """A worker's batch, decided in its order (so exactly as if one request at a time)."""
        if sum(sizes) != len(keys) or 4 * len(keys) != len(limits):
            raise ValueError("a batch whose sizes, keys and limits disagree")
        self.batches += 1
        values: List[int] = []
        at = 0
        for size in sizes:
            values.extend(self.decide(keys[at : at + size], limits[4 * at : 4 * (at + size)]))
            at += size
        return values

    def resize(self, max_keys: int) -> None:
        """A reload changed ``rate_limiting.max_keys``: the state is kept."""
        self.backend.max_keys = max_keys


#: A batch is sent early past this many requests or key characters (AMP's 64 KiB per value).
BATCH_REQUESTS = 256
BATCH_KEY_CHARS = 24_000


class HostBackend:
    """
    A worker's memory backend: every decision is the supervisor's.

    Decisions asked during one reactor turn travel together in one `Decide`
    (sent at the end of the turn, ``callLater(0)``), which divides the cost
    of a message by the number of requests in it under load and adds no
    wait when idle.
    """

    name = "memory"

    def __init__(self, link: Any, clock: Any, *, timeout: float = 1.0) -> None:
        """:param link: has ``.protocol``, the AMP connection to the supervisor (None when lost)."""
        self.link = link
        self.clock = clock
        self.timeout = timeout
        self.failures = 0
        self._pending: List[Tuple[List[str], List[int], "Deferred[Decision]"]] = []
        self._chars = 0
        self._flush: Any = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._send()

    def decide(self, keys: Sequence[str], limits: Sequence[Limit], now_us: Optional[int] = None) -> "Deferred[Decision]":
        if self.link.protocol is None:
            self.failures += 1
            return fail(BackendUnavailable("the supervisor is not reachable"))
        d: Deferred[Decision] = Deferred()
        self._pending.append((list(keys), encode_limits(limits), d))
        self._chars += sum(len(k) for k in keys)
        if len(self._pending) >= BATCH_REQUESTS or self._chars >= BATCH_KEY_CHARS:
            if self._flush is not None and self._flush.active():
                self._flush.cancel()
            self._send()
        elif self._flush is None or not self._flush.active():
            self._flush = self.clock.callLater(0, self._send)
        return d

    def _send(self) -> None:
        batch, self._pending, self._chars = self._pending, [], 0
        if not batch:
            return
        protocol = self.link.protocol
        if protocol is None:
            self._fail_all(batch, Failure(BackendUnavailable("the supervisor is not reachable")))
            return
        sizes = [len(keys) for keys, _, _ in batch]
        keys = [key for request_keys, _, _ in batch for key in request_keys]
        limits = [value for _, request_limits, _ in batch for value in request_limits]
        d = protocol.callRemote(Decide, sizes=sizes, keys=keys, limits=limits)
        d.addTimeout(self.timeout, self.clock)
        d.addCallbacks(self._answered, lambda f: self._fail_all(batch, f), (batch,))

    def _answered(self, answer: Any, batch: List[Any]) -> None:
        values = answer["values"]
        at = 0
        for keys, _, d in batch:
            width = 1 + 4 * len(keys)
            try:
                decision = decode_decision(values[at : at + width], len(keys))
            except ValueError as error:
                self.failures += 1
                d.errback(Failure(BackendUnavailable(f"the supervisor answered badly: {error}")))
            else:
                d.callback(decision)
            at += width

    def _fail_all(self, batch: List[Any], failure: Failure) -> None:
        self.failures += len(batch)
        error = BackendUnavailable(f"the supervisor did not decide: {failure.getErrorMessage()}")
        for _, _, d in batch:
            d.errback(Failure(error))

    def describe(self) -> Tuple[Tuple[str, Any], ...]:
        return (("backend", "memory"), ("scope", "host (decided by the supervisor)"), ("failures", self.failures))
