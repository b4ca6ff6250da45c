"""
Choosing a target for a request: the balancer over the serving tier, breaker
admission, falling back to worse tiers (backups), and the 503 when nothing
is left.

`TargetChoice` is a base of `twistgate.upstream.group.Upstream`, not an
object of its own: `admit` is on every request's path, and a base class
costs no call layer there.  It reads the candidate lists that
`twistgate.upstream.membership.TargetSet` keeps.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred

from twistgate.errors import GatewayError
from twistgate.messages import ProxyRequest
from twistgate.upstream.failures import CircuitOpen, NoHealthyUpstream, with_retry_after
from twistgate.upstream.outlier import OutlierDetector
from twistgate.upstream.target import Target

__all__ = ["TargetChoice"]


def _admitted(target: Target) -> Optional[Tuple[Target, Optional[int]]]:
    """`target` and its breaker ticket, or None when its breaker lets nothing through."""
    breaker = target.breaker
    if breaker is None:
        return target, None
    ticket = breaker.admit()
    return (target, ticket) if ticket is not None else None


def _untried(tier: Sequence[Target], tried: Sequence[Target]) -> Sequence[Target]:
    """A retry prefers a target not tried yet, else one other than the last."""
    if not tried:
        return tier
    last = tried[-1]
    return [t for t in tier if t not in tried] or [t for t in tier if t is not last] or tier


class TargetChoice:
    """Which target a request goes to (a base of `Upstream`)."""

    targets: Tuple[Target, ...]
    outlier: Optional[OutlierDetector]
    _ready: List[Target]  # the serving tier's available targets
    _fallback: List[List[Target]]  # the worse tiers' available targets, best first
    _pick: Callable[[Sequence[Target], ProxyRequest], Any]  # the balancer's
    #: The balancer picks a lone candidate with no side effect (no random
    #: draw, no state): it need not be asked (a built-in's `only_one_picks_itself`).
    _only_one_picks_itself = False
    _lone: Any  # (`twistgate.upstream.membership.TargetSet`)

    def candidates(self) -> List[Target]:
        """The targets a request may be sent to now, of every tier."""
        return [t for tier in (self._ready, *self._fallback) for t in tier]

    def admit(self, request: ProxyRequest, tried: Sequence[Target] = (), prefer: Optional[Target] = None) -> Any:
        """
        A target for `request` (preferring one not in `tried`) and its breaker
        ticket (a Deferred of both from an extension balancer); raises 503
        `NoHealthyUpstream` / `CircuitOpen` when none is left.

        :param prefer: the target a sticky cookie pins the client to; chosen
            when it is a candidate now and not tried yet, else the balancer
            chooses.  When every target of the best tier refuses (half-open
            breakers), the next tier (the backups) is tried.
        """
        if prefer is not None:
            if prefer not in tried and prefer in self._ready:
                admitted = _admitted(prefer)
                if admitted is not None:
                    return admitted
        elif not tried and self._lone is not None:
            return self._lone  # what the balancer would pick, without the asking
        if not tried:
            return self._place(self._ready, request, self._fallback, tried)
        tiers = [self._ready, *self._fallback]
        return self._place(_untried(tiers[0], tried), request, tiers[1:], tried)

    def _place(self, candidates: Sequence[Target], request: ProxyRequest, rest: List[Any], tried: Sequence[Target]) -> Any:
        pick = self._pick
        while True:
            while candidates:
                target = pick(candidates, request)
                # (Deferred's metaclass is ABCMeta: rule out a Target first, the usual answer.)
                if target.__class__ is not Target and isinstance(target, Deferred):  # an extension balancer answering later
                    return target.addCallback(self._placed, candidates, request, rest, tried)
                admitted = _admitted(target)
                if admitted is not None:
                    return admitted
                candidates = [t for t in candidates if t is not target]
            if not rest:
                raise self._unavailable()
            candidates, rest = _untried(rest[0], tried), rest[1:]

    def _placed(self, target: Target, candidates: Sequence[Target], request: ProxyRequest, rest: List[Any], tried: Sequence[Target]) -> Any:
        admitted = _admitted(target)
        if admitted is not None:
            return admitted
        return self._place([t for t in candidates if t is not target], request, rest, tried)

    def available(self, target: Target) -> bool:
        """Whether `target` would be chosen now if asked for: of the serving tier, breaker allowing."""
        return target in self._ready and (target.breaker is None or target.breaker.allows())

    def choose(self, request: ProxyRequest) -> Any:
        """The target the balancer would choose now (no breaker admission); a Deferred from an extension."""
        for tier in (self._ready, *self._fallback):
            candidates = [t for t in tier if t.breaker is None or t.breaker.allows()]
            if candidates:
                return self._pick(candidates, request)
        raise self._unavailable()

    def _unavailable(self) -> GatewayError:
        up = [t for t in self.targets if t.healthy and t.outlier.ejected_until is None]
        blocked = [t.breaker for t in up if t.breaker is not None and not t.breaker.allows()]
        if up and len(blocked) == len(up):
            waits = [w for w in (b.retry_after() for b in blocked) if w is not None]
            return with_retry_after(CircuitOpen(), min(waits) if waits else None)
        wait = self.outlier.retry_after(self.targets) if self.outlier is not None else None
        return with_retry_after(NoHealthyUpstream(), wait)
