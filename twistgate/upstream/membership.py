"""
An upstream group's target set and the bookkeeping of its targets' state:
targets arriving and leaving (configuration, DNS, ``targets_from``), their
breakers, and the candidate lists recomputed whenever health, a breaker,
outlier ejection or a drain moves one.

`TargetSet` is a base of `twistgate.upstream.group.Upstream`; the lists it
keeps (`_ready`, `_fallback`) are what `twistgate.upstream.choosing`
chooses from on every request, so they are recomputed here, on change,
never there.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Set, Tuple

from twisted.logger import Logger

from twistgate.upstream.breaker import OPEN, CircuitBreaker
from twistgate.upstream.discovery import Resolved
from twistgate.upstream.events import UpstreamEvents
from twistgate.upstream.outlier import OutlierDetector
from twistgate.upstream.target import Target

__all__ = ["TargetSet"]

_log = Logger()


class TargetSet:
    """The targets of a group and which of them may serve now (a base of `Upstream`)."""

    name: str
    clock: Any
    balancer: Any
    health: Any
    breaker_config: Any
    drained: Set[str]
    events: UpstreamEvents
    targets: Tuple[Target, ...]
    _ready: List[Target]
    _fallback: List[List[Target]]
    _tiered: bool  # targets of more than one priority
    _only_one_picks_itself: bool
    #: ``(target, None)`` while the serving tier is one target without a
    #: breaker and the balancer picks a lone candidate itself: what `admit`
    #: answers a first attempt without asking (None otherwise).
    _lone: Any = None

    def _set_targets(self, resolved: Sequence[Resolved]) -> None:
        """Make `resolved` the target set, keeping the state of targets that stay."""
        existing = {t.ident: t for t in self.targets}
        targets: List[Target] = []
        changed = False
        for spec in resolved:
            fresh = Target(
                spec.config, address=spec.address, port=spec.port, host=spec.host,
                weight=spec.weight, priority=spec.priority,
            )  # fmt: skip
            old = existing.pop(fresh.ident, None)
            if old is not None:
                if (old.weight, old.priority) != (fresh.weight, fresh.priority):
                    old.weight, old.priority = fresh.weight, fresh.priority
                    changed = True
                targets.append(old)
            elif fresh.ident not in {t.ident for t in targets}:
                self._adopt(fresh)
                targets.append(fresh)
        for gone in existing.values():
            self._retire(gone)
        if tuple(targets) == self.targets and not existing and not changed:
            return  # the same set again (most DNS refreshes): nothing to rebuild
        self.targets = tuple(targets)
        self._tiered = len({t.priority for t in targets}) > 1
        self.balancer.rebuild(self.targets)
        if self.health is not None:
            self.health.watch(self.targets)
        self._refresh()

    def _adopt(self, target: Target) -> None:
        if self.breaker_config is not None:
            target.breaker = CircuitBreaker(
                self.breaker_config, self.clock, lambda old, new, t=target: self._breaker_moved(t, old, new)
            )
        target.endpoint = None  # made on first use (`send`)

    def _retire(self, target: Target) -> None:
        """A target left the set: its timers go; requests in flight on it finish."""
        _log.info("upstream {upstream}: target {target} removed", upstream=self.name, target=target.label)
        if target.breaker is not None:
            target.breaker.cancel_timer()
        OutlierDetector.forget(target)

    def _refresh(self) -> None:
        """
        Recompute the candidates: healthy, not ejected, breaker not open, not
        drained, of the best tier (priority) that has any.  Backup targets
        are a worse tier: they serve only while no primary is available, and
        traffic returns to a primary as soon as one is (health, breaker,
        ejection and drains each call this on every change).
        """
        drained = self.drained
        ready = [
            t
            for t in self.targets
            if t.healthy and t.outlier.ejected_until is None and (t.breaker is None or t.breaker.state != OPEN)
            and t.url not in drained
        ]
        fallback: List[List[Target]] = []
        if self._tiered and ready:
            tiers = sorted({t.priority for t in ready})
            ready, fallback = (
                [t for t in ready if t.priority == tiers[0]],
                [[t for t in ready if t.priority == p] for p in tiers[1:]],
            )
        self._ready = ready
        self._fallback = fallback
        lone = len(ready) == 1 and ready[0].breaker is None and self._only_one_picks_itself
        self._lone = (ready[0], None) if lone else None

    def refresh(self) -> None:
        """The drained set changed (`twistgate.ops.drain`): choose again."""
        self._refresh()

    def _target_moved(self, target: Target) -> None:
        self._refresh()

    def _breaker_moved(self, target: Target, old: str, new: str) -> None:
        log = _log.warn if new == OPEN else _log.info
        log(
            "upstream {upstream}: circuit breaker of {target} {old} -> {new}",
            upstream=self.name,
            target=target.label,
            old=old,
            new=new,
        )
        self._refresh()
        self.events.breaker_changed(self.name, target.url, old, new)

    def snapshot(self) -> List[Dict[str, Any]]:
        """One plain dict per target (url, weight, healthy, draining, breaker, in_flight, ejected, ewma_ms, last_error...)."""
        now = self.clock.seconds()
        drained = self.drained
        return [dict(target.snapshot(now), draining=target.url in drained) for target in self.targets]
