"""
One try of a request on one target (`twistgate.upstream.call.Forwarding`
makes them).

`Attempt` does the bookkeeping: in-flight count, latency, and the outcome
fed to the breaker and the outlier detector exactly once (at the head for a
failing status, otherwise when the body is over).  Its base
`twistgate.upstream.watch.ResponseWatch` makes it the read timeout and,
once the head arrived, the response the exchange relays: one object per
attempt from the send to the end of the body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twistgate.upstream.watch import ResponseWatch

if TYPE_CHECKING:
    from twistgate.upstream.group import Upstream
    from twistgate.upstream.target import Target

__all__ = ["Attempt"]


class Attempt(ResponseWatch):
    """One try on one target, from send to the end of the body."""

    __slots__ = ("upstream", "target", "ticket", "started", "head_at", "breaker_due", "outlier_due", "closed")

    def __init__(self, upstream: "Upstream", target: "Target", ticket: Optional[int], read: float) -> None:
        # The base's fields too, here: one call less per attempt.
        timers = upstream.timers
        self.timers = self._owner = timers
        self._call = None  # its timer's (`twistgate.timers.Timed`): not armed
        self.clock = clock = timers.clock
        self.idle = read  # the read timeout
        self._response: Any = None  # the upstream's, once its head arrived
        self.timer: Any = None
        self.on_timeout: Any = None
        self.route_deadline: Any = None  # the exchange, while the head's timer stands for its route timeout
        self.timed_out = False  # no head, or no body bytes, within the read timeout
        self.inner: Any = None  # the exchange's body protocol, once delivered
        self.transport: Any = None
        self.paused = False
        self.stopped_here = False  # the gateway stopped it (client gone, route timeout, discard)
        self.delivering = False  # inside `deliverBody`
        self.upstream = upstream
        self.target = target
        self.ticket = ticket
        self.started = clock.seconds()
        self.breaker_due = target.breaker is not None and ticket is not None
        self.outlier_due = upstream.outlier is not None
        self.closed = False
        target.in_flight += 1

    def failed(self, error: str) -> None:
        """The attempt failed before a response head (connect failure, reset, timeout)."""
        self.target.last_error = error
        self._settle(False)
        self._close()

    def answered(self, response: Any) -> "Attempt":
        """
        A response head arrived: latency, and failing statuses count at once;
        the attempt now stands for it (`ResponseWatch`'s face).  Its timer
        runs on, for the body when it is delivered at once (see `handed_over`).
        """
        self._response = response
        self.on_timeout = self.route_deadline = None
        self.code = status = response.code
        self.phrase = response.phrase
        self.headers = response.headers
        self.length = response.length
        self.version = response.version
        self.whole_body = getattr(response, "whole_body", None)  # only the HTTP/1.1 client's have it
        self.head_at = now = self.clock.seconds()
        self.target.latency.add(now - self.started, now)
        if self.breaker_due or self.outlier_due:
            self._count_failing(status)
        return self

    def _count_failing(self, status: int) -> None:
        """A status the breaker or the outlier detector counts as a failure counts at once."""
        upstream, target = self.upstream, self.target
        failing = False
        if self.breaker_due and status in target.breaker.config.statuses:  # type: ignore[union-attr]
            self.breaker_due = False
            target.breaker.record(self.ticket, False)  # type: ignore[union-attr,arg-type]
            failing = True
        outlier = upstream.outlier
        if self.outlier_due and status in outlier.config.statuses:  # type: ignore[union-attr]
            self.outlier_due = False
            outlier.record(target, False, upstream.targets)  # type: ignore[union-attr]
            failing = True
        if failing:
            target.last_error = f"answered {status}"

    def body_over(self, ok: bool, error: Optional[str]) -> None:
        """The response body ended (`ok`: complete, or stopped by the gateway)."""
        if not ok:
            self.target.last_error = error
        if self.breaker_due or self.outlier_due:
            self._settle(ok)
        self._close()

    def abandon(self) -> None:
        """Cancelled by the client or a timeout of the whole call: no outcome to record."""
        if self.breaker_due:
            self.breaker_due = False
            self.target.breaker.release(self.ticket)  # type: ignore[union-attr,arg-type]
        self.outlier_due = False
        self._close()

    def _settle(self, ok: bool) -> None:
        if self.breaker_due:
            self.breaker_due = False
            self.target.breaker.record(self.ticket, ok)  # type: ignore[union-attr,arg-type]
        if self.outlier_due:
            self.outlier_due = False
            self.upstream.outlier.record(self.target, ok, self.upstream.targets)  # type: ignore[union-attr]

    def _close(self) -> None:
        if self.timer is not None:
            self.stop_timer()
        if not self.closed:
            self.closed = True
            self.target.in_flight -= 1
