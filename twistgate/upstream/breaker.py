"""
A circuit breaker for one target: closed, open, half-open.

* **closed**: requests pass; ``failure_threshold`` consecutive failures open it.
* **open**: nothing passes (the gateway answers 503 ``circuit_open`` without
  touching the target).  A reactor timer moves it to half-open after
  ``recovery_timeout``: recovery does not wait for a next request.
* **half-open**: at most ``half_open_requests`` probes are let through at a
  time; ``success_threshold`` successes close it, one failure opens it again.

Only the outcomes of requests admitted in the current state count: a slow
request admitted while closed that fails after the breaker went half-open
does not decide the probe.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twistgate.upstream.settings import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

#: Called with (old state, new state) on every transition.
StateListener = Callable[[str, str], None]


class CircuitBreaker:
    """The breaker state machine, on an injected clock."""

    __slots__ = ("config", "clock", "state", "failures", "successes", "probes", "epoch", "opened_at", "_timer", "_listener")

    def __init__(self, config: BreakerConfig, clock: Any, listener: Optional[StateListener] = None) -> None:
        self.config = config
        self.clock = clock
        self.state = CLOSED
        self.failures = 0  # consecutive, while closed
        self.successes = 0  # while half-open
        self.probes = 0  # half-open requests in flight
        self.epoch = 0  # bumped on every transition; admissions carry it
        self.opened_at: Optional[float] = None
        self._timer: Any = None
        self._listener = listener

    # -- the request path ----------------------------------------------------

    def allows(self) -> bool:
        """Whether a request could be admitted now (without admitting it)."""
        state = self.state
        return state == CLOSED or (state == HALF_OPEN and self.probes < self.config.half_open_requests)

    def admit(self) -> Optional[int]:
        """Admit one request: its ticket (the epoch) for `record`, or None when refused."""
        state = self.state
        if state == CLOSED:
            return self.epoch
        if state == HALF_OPEN and self.probes < self.config.half_open_requests:
            self.probes += 1
            return self.epoch
        return None

    def record(self, ticket: int, ok: bool) -> None:
        """The outcome of a request admitted with `ticket`."""
        if ticket != self.epoch:
            return  # admitted under an earlier state: it decides nothing now
        if self.state == CLOSED:
            if ok:
                self.failures = 0
            else:
                self.failures += 1
                if self.failures >= self.config.failure_threshold:
                    self._open()
        elif self.state == HALF_OPEN:
            self.probes -= 1
            if not ok:
                self._open()
            else:
                self.successes += 1
                if self.successes >= self.config.success_threshold:
                    self._move(CLOSED)

    def release(self, ticket: int) -> None:
        """A request admitted with `ticket` ended without an outcome (cancelled by the client)."""
        if ticket == self.epoch and self.state == HALF_OPEN:
            self.probes -= 1

    def retry_after(self) -> Optional[float]:
        """Seconds until an open breaker goes half-open."""
        if self.state != OPEN or self.opened_at is None:
            return None
        return max(0.0, self.opened_at + self.config.recovery_timeout - self.clock.seconds())

    # -- transitions -----------------------------------------------------------

    def _open(self) -> None:
        self.opened_at = self.clock.seconds()
        self._move(OPEN)
        self._schedule(self.config.recovery_timeout)

    def _schedule(self, delay: float) -> None:
        self.cancel_timer()
        self._timer = self.clock.callLater(delay, self._recover)

    def _recover(self) -> None:
        self._timer = None
        if self.state == OPEN:
            self._move(HALF_OPEN)

    def _move(self, new: str) -> None:
        old, self.state = self.state, new
        self.epoch += 1
        self.failures = self.successes = self.probes = 0
        if new != OPEN:
            self.opened_at = None
            self.cancel_timer()
        if self._listener is not None:
            self._listener(old, new)

    # -- lifetime --------------------------------------------------------------

    def cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def resume(self) -> None:
        """Re-arm the recovery timer of an open breaker whose timer was cancelled (a restart)."""
        if self.state == OPEN and self._timer is None:
            self._schedule(self.retry_after() or 0.0)
