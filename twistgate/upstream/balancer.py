"""
Choosing a target among the candidates of an upstream (the targets that are
healthy, not ejected, and whose breaker lets a request through).

Every strategy has `pick(candidates, request)` and `rebuild(targets)` (the
whole set changed: discovery): the gateway's hot path, on its own targets.
Each is also an extension like any third-party balancer: a factory per name
(`round_robin` ...) in the ``twistgate.balancers`` registry
(`twistgate.plugins.extension_points`), and the public ``choose(targets,
request)`` on `TargetInfo` / `RequestInfo` views.  Per-target state the strategies use lives on
the targets themselves: ``weight``, ``in_flight``, the smooth round robin's
current weight ``cw`` and the latency average (`LatencyAverage`).

* ``round_robin``: NGINX's smooth weighted round robin: weights 3:1 give
  a a b a, interleaved rather than bursts; equal weights are plain rotation.
* ``least_connections``: fewest requests in flight per unit of weight; ties
  are broken by the smooth round robin, so weights hold at low concurrency.
* ``random``: weighted random (an injected `random.Random`).
* ``least_response_time``: power of two choices (two random candidates,
  the cheaper wins) on a decaying average of response-head latency times
  the requests in flight (Finagle's "peak EWMA").
* ``ip_hash`` / ``consistent_hash``: a hash ring (`HashRing`) on the client
  address, a header or a cookie.
"""

from __future__ import annotations

import dataclasses
import math
from math import exp
from random import Random
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence

from twistgate.plugins.options import NO_OPTIONS, with_options
from twistgate.upstream.hashring import HashRing
from twistgate.upstream.settings import HashKeyConfig, hash_key_from_text

if TYPE_CHECKING:
    from twistgate.plugins.extension_points import ExtensionContext

#: How fast the latency average forgets (seconds).
LATENCY_DECAY = 5.0


class LatencyAverage:
    """A time-decayed average of latency that jumps up at once on a slower sample (peak EWMA)."""

    __slots__ = ("value", "at", "samples")

    def __init__(self) -> None:
        self.value = 0.0
        self.at = 0.0
        self.samples = 0

    def current(self, now: float) -> float:
        if not self.samples:
            return 0.0
        return self.value * math.exp(-max(0.0, now - self.at) / LATENCY_DECAY)

    def add(self, sample: float, now: float) -> None:
        # On every response's path: no builtin called but the one exp.
        samples = self.samples
        self.samples = samples + 1
        if samples:
            # `current` and the sample's weight share one decay factor: one exp
            # per response (none while the clock has not moved), not two.
            elapsed = now - self.at
            decay = exp(-elapsed / LATENCY_DECAY) if elapsed > 0.0 else 1.0
            value = self.value * decay
            if sample > value:
                self.value = sample
            else:
                # Time-decayed, but every sample counts for at least a tenth.
                fresh = 1 - decay
                if fresh < 0.1:
                    fresh = 0.1
                self.value = value * (1 - fresh) + sample * fresh
        else:
            self.value = sample
        self.at = now


class Strategy:
    """What the built-in strategies share: the public extension method over `pick`."""

    def rebuild(self, targets: Sequence[Any]) -> None:
        pass

    def pick(self, candidates: Sequence[Any], request: Any = None) -> Any:
        raise NotImplementedError

    def choose(self, targets: Sequence[Any], request: Any) -> Any:
        """``twistgate.balancers``' method: one of `targets` (`TargetInfo`) for `request` (`RequestInfo`)."""
        from twistgate.plugins.views import request_of, target_of

        inner = [target_of(t) for t in targets]
        chosen = self.pick(inner, request_of(request) if request is not None else None)
        return targets[inner.index(chosen)]


class RoundRobin(Strategy):
    """Smooth weighted round robin over whatever candidates it is given."""

    only_one_picks_itself = True  # `pick` of one candidate is it, with no side effect

    def __init__(self) -> None:
        self._next = 0
        self._uniform = True

    def rebuild(self, targets: Sequence[Any]) -> None:
        self._uniform = len({t.weight for t in targets}) <= 1
        for target in targets:
            target.cw = 0

    def pick(self, candidates: Sequence[Any], request: Any = None) -> Any:
        if len(candidates) == 1:
            return candidates[0]
        if self._uniform:
            i = self._next % len(candidates)
            self._next = i + 1
            return candidates[i]
        return smooth_pick(candidates)


def smooth_pick(candidates: Sequence[Any]) -> Any:
    """One step of NGINX's smooth weighted round robin over `candidates`."""
    total = 0
    best = None
    for target in candidates:
        target.cw += target.weight
        total += target.weight
        if best is None or target.cw > best.cw:
            best = target
    best.cw -= total
    return best


class LeastConnections(Strategy):
    """Fewest in-flight requests per unit of weight; the smooth round robin among ties."""

    only_one_picks_itself = True  # `pick` of one candidate is it, with no side effect

    def rebuild(self, targets: Sequence[Any]) -> None:
        for target in targets:
            target.cw = 0

    def pick(self, candidates: Sequence[Any], request: Any = None) -> Any:
        if len(candidates) == 1:
            return candidates[0]
        tied: List[Any] = []
        best_load = best_weight = 0
        for target in candidates:
            # in_flight / weight, compared without division.
            if not tied or target.in_flight * best_weight < best_load * target.weight:
                tied = [target]
                best_load, best_weight = target.in_flight, target.weight
            elif target.in_flight * best_weight == best_load * target.weight:
                tied.append(target)
        return tied[0] if len(tied) == 1 else smooth_pick(tied)


class WeightedRandom(Strategy):
    """A candidate at random, in proportion to its weight."""

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self._uniform = True

    def rebuild(self, targets: Sequence[Any]) -> None:
        self._uniform = len({t.weight for t in targets}) <= 1

    def pick(self, candidates: Sequence[Any], request: Any = None) -> Any:
        if self._uniform or len(candidates) == 1:
            return candidates[self.rng.randrange(len(candidates))]
        return self.rng.choices(candidates, weights=[t.weight for t in candidates])[0]


class LeastResponseTime(Strategy):
    """Power of two random choices on latency average x (in flight + 1) / weight."""

    only_one_picks_itself = True  # `pick` of one candidate is it, with no side effect

    def __init__(self, rng: Random, clock: Any) -> None:
        self.rng = rng
        self.clock = clock

    def rebuild(self, targets: Sequence[Any]) -> None:
        pass

    def pick(self, candidates: Sequence[Any], request: Any = None) -> Any:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        i = self.rng.randrange(n)
        j = self.rng.randrange(n - 1)
        if j >= i:
            j += 1
        a, b = candidates[i], candidates[j]
        now = self.clock.seconds()
        cost_a, cost_b = a.latency.current(now), b.latency.current(now)
        # A target not measured yet costs what the other does: load decides.
        if not a.latency.samples:
            cost_a = cost_b
        if not b.latency.samples:
            cost_b = cost_a
        score_a = (cost_a + 1e-4) * (a.in_flight + 1) / a.weight
        score_b = (cost_b + 1e-4) * (b.in_flight + 1) / b.weight
        return a if score_a <= score_b else b


class ConsistentHash(Strategy):
    """A hash ring keyed on the client address, a header or a cookie."""

    def __init__(self, key: HashKeyConfig) -> None:
        self.key = key
        self._header = key.name.encode("latin-1") if key.source == "header" else b""
        self._ring: HashRing[Any] = HashRing([], _ring_name)
        self._size = 0

    def rebuild(self, targets: Sequence[Any]) -> None:
        self._ring = HashRing(targets, _ring_name)
        self._size = len(targets)

    def key_of(self, request: Any) -> bytes:
        source = self.key.source
        if source == "header":
            values = request.headers.getRawHeaders(self._header)
            if values:
                return values[0]
        elif source == "cookie":
            value = cookie_value(request.headers.getRawHeaders(b"Cookie") or (), self.key.name)
            if value is not None:
                return value
        return (request.client_ip or request.peer_ip or "").encode("latin-1")

    def pick(self, candidates: Sequence[Any], request: Any = None) -> Any:
        key = self.key_of(request) if request is not None else b""
        if len(candidates) == self._size:
            chosen = self._ring.lookup(key)
        else:
            allowed = set(map(id, candidates))
            chosen = self._ring.lookup(key, lambda t: id(t) in allowed)
        return chosen if chosen is not None else candidates[0]


def _ring_name(target: Any) -> str:
    return target.ident


def cookie_value(headers: Sequence[bytes], name: str) -> Optional[bytes]:
    """The value of cookie `name` in `Cookie` header fields (RFC 6265 §4.2.1)."""
    wanted = name.encode("latin-1")
    for header in headers:
        for pair in header.split(b";"):
            key, eq, value = pair.strip().partition(b"=")
            if eq and key == wanted:
                return value.strip().strip(b'"')
    return None


def make_balancer(strategy: str, *, rng: Random, clock: Any, hash_key: Optional[HashKeyConfig]) -> Any:
    """The strategy object for ``upstreams.X.balance`` (a built-in name)."""
    if strategy == "least_connections":
        return LeastConnections()
    if strategy == "random":
        return WeightedRandom(rng)
    if strategy == "least_response_time":
        return LeastResponseTime(rng, clock)
    if strategy == "ip_hash":
        return ConsistentHash(HashKeyConfig())
    if strategy == "consistent_hash":
        return ConsistentHash(hash_key or HashKeyConfig())
    return RoundRobin()


# -- the factories, as registered in twistgate.plugins.extension_points ------------


@with_options(NO_OPTIONS)
def round_robin(options: Mapping[str, Any]) -> RoundRobin:
    """Smooth weighted round robin (NGINX's)."""
    return RoundRobin()


@with_options(NO_OPTIONS)
def least_connections(options: Mapping[str, Any]) -> LeastConnections:
    """Fewest requests in flight per unit of weight."""
    return LeastConnections()


@with_options(NO_OPTIONS)
def random(options: Mapping[str, Any], context: "ExtensionContext") -> WeightedRandom:
    """A target at random, in proportion to its weight."""
    return WeightedRandom(context.rng)


@with_options(NO_OPTIONS)
def least_response_time(options: Mapping[str, Any], context: "ExtensionContext") -> LeastResponseTime:
    """Power of two random choices on a peak-EWMA latency average."""
    return LeastResponseTime(context.rng, context.clock)


@with_options(NO_OPTIONS)
def ip_hash(options: Mapping[str, Any]) -> ConsistentHash:
    """A hash ring on the client address: a client keeps its target."""
    return ConsistentHash(HashKeyConfig())


@dataclasses.dataclass(frozen=True)
class HashOptions:
    """``balance: {type: consistent_hash, key: header:X-User}`` (or the ``hash_key`` section)."""

    key: str = "ip"

    def __post_init__(self) -> None:
        hash_key_from_text(self.key)  # ValueError: a config error


@with_options(HashOptions)
def consistent_hash(options: Mapping[str, Any]) -> ConsistentHash:
    """A hash ring on the client address, a header or a cookie (`key`)."""
    key = options.get("key", "ip")
    return ConsistentHash(key if isinstance(key, HashKeyConfig) else hash_key_from_text(key))
