"""
Passive health: eject a target after consecutive failures of real traffic
(Envoy's outlier detection).

A target is ejected for ``base_ejection_time`` times the number of times it
has been ejected, capped at ``max_ejection_time``, so a target that keeps
failing stays out longer each time; the count goes back to zero once the
target has gone ``max_ejection_time`` without an ejection.  A reactor timer
brings it back.  Never more than ``max_ejected`` of the upstream's targets
are out at once (at least one may be, when there are two or more; a lone
target only with ``max_ejected: 100%``), so outlier detection cannot turn a
bad moment into an outage.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

from twisted.logger import Logger

from twistgate.upstream.settings import OutlierConfig

_log = Logger()


class OutlierState:
    """Per-target counters of the detector."""

    __slots__ = ("failures", "ejections", "ejected_until", "returned_at", "timer")

    def __init__(self) -> None:
        self.failures = 0  # consecutive
        self.ejections = 0  # the multiplier of the ejection time
        self.ejected_until: Optional[float] = None
        self.returned_at: Optional[float] = None  # when it last came back
        self.timer: Any = None


class OutlierDetector:
    """Counts outcomes per target and ejects or brings back targets."""

    def __init__(self, config: OutlierConfig, clock: Any, on_change: Callable[[Any], None], upstream: str = "") -> None:
        self.config = config
        self.clock = clock
        self.on_change = on_change  # called with the target when it is ejected or returns
        self.upstream = upstream

    def record(self, target: Any, ok: bool, targets: Sequence[Any]) -> None:
        """One outcome of `target`; `targets` is the upstream's current set (for the ejection cap)."""
        state: OutlierState = target.outlier
        if ok:
            state.failures = 0
            return
        state.failures += 1
        if state.failures >= self.config.consecutive_failures and state.ejected_until is None:
            if self._may_eject(targets):
                self._eject(target)

    def _may_eject(self, targets: Sequence[Any]) -> bool:
        total = len(targets)
        ejected = sum(1 for t in targets if t.outlier.ejected_until is not None)
        allowed = math.floor(total * self.config.max_ejected + 1e-9)
        if total >= 2:
            allowed = max(allowed, 1)
        return ejected < allowed

    def _eject(self, target: Any) -> None:
        state: OutlierState = target.outlier
        config = self.config
        now = self.clock.seconds()
        if state.returned_at is not None and now - state.returned_at >= config.max_ejection_time:
            state.ejections = 0  # a long clean spell forgives the past
        state.ejections += 1
        duration = min(config.base_ejection_time * state.ejections, config.max_ejection_time)
        state.ejected_until = now + duration
        state.failures = 0
        state.timer = self.clock.callLater(duration, self._return, target)
        _log.warn(
            "upstream {upstream}: target {target} ejected for {seconds:g}s after {count} consecutive failures",
            upstream=self.upstream,
            target=target.label,
            seconds=duration,
            count=config.consecutive_failures,
        )
        self.on_change(target)

    def _return(self, target: Any) -> None:
        state: OutlierState = target.outlier
        state.timer = None
        state.returned_at = state.ejected_until  # when it was due (a late timer changes nothing)
        state.ejected_until = None
        _log.info("upstream {upstream}: target {target} is back from ejection", upstream=self.upstream, target=target.label)
        self.on_change(target)

    def retry_after(self, targets: Sequence[Any]) -> Optional[float]:
        """Seconds until the first ejected target returns."""
        ends = [t.outlier.ejected_until for t in targets if t.outlier.ejected_until is not None]
        return max(0.0, min(ends) - self.clock.seconds()) if ends else None

    @staticmethod
    def forget(target: Any) -> None:
        """Cancel a target's timer (it left the upstream, or the upstream stops)."""
        state: OutlierState = target.outlier
        if state.timer is not None and state.timer.active():
            state.timer.cancel()
        state.timer = None

    def resume(self, target: Any) -> None:
        """Re-arm the timer of an ejected target whose timer was cancelled (a restart)."""
        state: OutlierState = target.outlier
        if state.ejected_until is not None and state.timer is None:
            delay = max(0.0, state.ejected_until - self.clock.seconds())
            state.timer = self.clock.callLater(delay, self._return, target)
