"""
Active health checks: every target is probed with ``GET <path>`` on a
`LoopingCall` (on the injected clock) every ``interval``, each probe delayed
by a random jitter in ``[0, jitter]`` so many gateways do not probe in step.

A probe succeeds when the check's verdict on its result is None within
``timeout`` (the ``http`` check: an expected status; see
twistgate.upstream.checks and, for third-party checks,
twistgate.upstream.external).
``unhealthy_threshold`` consecutive failures take a target out of rotation;
``healthy_threshold`` consecutive successes bring it back.  Targets start
healthy, so a gateway that starts before its first probes still serves.
"""

from __future__ import annotations

from random import Random
from typing import Any, Callable, Dict, Optional, Sequence

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.upstream.failures import describe
from twistgate.upstream.settings import HealthCheckConfig

_log = Logger()

#: probe(target) -> Deferred firing with the check's result (fails on any error or timeout).
Probe = Callable[[Any], "Deferred[Any]"]
#: verdict(result) -> None when healthy, else why not (for ``last_error``).
Verdict = Callable[[Any], Optional[str]]


class HealthChecker:
    """The probe loops of one upstream's targets."""

    def __init__(
        self,
        config: HealthCheckConfig,
        clock: Any,
        probe: Probe,
        on_change: Callable[[Any], None],
        rng: Random,
        upstream: str = "",
        verdict: Optional[Verdict] = None,
    ) -> None:
        self.config = config
        #: The http status rule of `config` unless the check brings its own.
        self.verdict: Verdict = verdict if verdict is not None else self._status_verdict
        self.clock = clock
        self.probe = probe
        self.on_change = on_change
        self.rng = rng
        self.upstream = upstream
        self._loops: Dict[Any, LoopingCall] = {}
        self._pending: Dict[Any, Deferred] = {}
        self.running = False

    def start(self, targets: Sequence[Any]) -> None:
        self.running = True
        self.watch(targets)

    def watch(self, targets: Sequence[Any]) -> None:
        """Probe exactly `targets` from now on (the set changed: discovery)."""
        if not self.running:
            return
        wanted = set(targets)
        for target in list(self._loops):
            if target not in wanted:
                self._halt(target)
        for target in targets:
            if target not in self._loops:
                loop = LoopingCall(self._tick, target)
                loop.clock = self.clock
                self._loops[target] = loop
                loop.start(self.config.interval, now=True).addErrback(self._loop_failed, target)

    def stop(self) -> None:
        self.running = False
        for target in list(self._loops):
            self._halt(target)

    def _halt(self, target: Any) -> None:
        loop = self._loops.pop(target)
        if loop.running:
            loop.stop()
        pending = self._pending.pop(target, None)
        if pending is not None:
            pending.cancel()

    def _tick(self, target: Any) -> "Deferred[None]":
        jitter = self.config.effective_jitter
        delay = self.rng.uniform(0, jitter) if jitter > 0 else 0
        d = deferLater(self.clock, delay, self._check, target) if delay else self._check(target)
        self._pending[target] = d
        d.addBoth(self._settled, target).addErrback(self._loop_failed, target)
        return d

    def _settled(self, result: Any, target: Any) -> None:
        if self._pending.get(target) is not None:
            del self._pending[target]
        if isinstance(result, Failure):
            result.trap(Exception)  # a cancelled probe (stop): nothing to record

    def _check(self, target: Any) -> "Deferred[None]":
        d = maybeDeferred(self.probe, target)  # a probe that raises is a failed probe, not a dead loop
        timer = self.clock.callLater(self.config.timeout, d.cancel)

        def done(result: Any) -> None:
            timed_out = not timer.active()
            if not timed_out:
                timer.cancel()
            if isinstance(result, Failure):
                reason = "timed out" if timed_out else describe(result)
                self.record(target, False, f"health check {reason}")
                return
            error = self.verdict(result)
            self.record(target, error is None, error)

        return d.addBoth(done)

    def _status_verdict(self, status: int) -> Optional[str]:
        return None if self.config.expects(status) else f"health check answered {status}"

    def record(self, target: Any, ok: bool, error: Optional[str]) -> None:
        """One probe's outcome; moves the target between healthy and unhealthy at the thresholds."""
        if not self.running:
            return
        if ok:
            target.probe_failures = 0
            target.probe_successes += 1
            if not target.healthy and target.probe_successes >= self.config.healthy_threshold:
                target.healthy = True
                _log.info("upstream {upstream}: target {target} is healthy again", upstream=self.upstream, target=target.label)
                self.on_change(target)
            return
        target.last_error = error
        target.probe_successes = 0
        target.probe_failures += 1
        if target.healthy and target.probe_failures >= self.config.unhealthy_threshold:
            target.healthy = False
            _log.warn(
                "upstream {upstream}: target {target} is unhealthy ({error})",
                upstream=self.upstream,
                target=target.label,
                error=error,
            )
            self.on_change(target)

    def _loop_failed(self, failure: Failure, target: Any) -> None:
        _log.failure("health check loop for {target} failed", failure, target=getattr(target, "label", target))
