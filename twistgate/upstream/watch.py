"""
Watching one attempt's response: the read timeout for its head, then for
each gap in its body, on one timer.

`ResponseWatch` is a base of `twistgate.upstream.attempt.Attempt`, so an
attempt, the `IResponse` the exchange receives and the body protocol
between the upstream response and the exchange's are one object, not three.
It stands in for Twisted's `IResponse`: everything is the response's own,
except that the body protocol is interposed, so that

* the read timeout bounds the wait for the head, then each gap between body
  chunks once the body is delivered (suspended while the client's back-pressure pauses the upstream);
* the attempt learns how the body ended (complete, broken off by the
  upstream, or stopped by the gateway) for breakers, outlier detection and
  the in-flight count that least_connections balances on.

While the head is awaited, the same timer may stand for the exchange's
route timeout too (`wait_head_within`: due at whichever comes first), so a
request on the hot path arms one timer, not two.

The body's timer is lazy: a chunk only notes the time, and a timer that
fires early re-arms itself for the rest, so a body of many chunks costs one
timer, not one reset per chunk.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twistgate.errors import UpstreamTimeout
from twistgate.relay import body_ended_cleanly
from twistgate.timers import Timed
from twistgate.upstream.failures import describe

#: Called once with (ok, error text) when the body is over.
BodyOutcome = Callable[[bool, Optional[str]], None]


class BodyIdleTimeout(UpstreamTimeout):
    default_message = "The upstream service stopped sending the response body."


@implementer(IPushProducer)
class ResponseWatch(Timed):
    """
    The response face and the body watch of an attempt (see the module
    docstring); `body_over(ok, error)` is the subclass's, and so is the
    setting of every field (`Attempt.__init__`, and `Attempt.answered` for
    the response's: one call less per attempt).
    It is its own timer (`Timed`, armed on `timers`): ``timer`` is itself
    while armed, None otherwise.
    """

    __slots__ = (
        "_response", "code", "phrase", "headers", "length", "version", "whole_body",
        "timers", "clock", "idle", "timer", "on_timeout", "timed_out", "last", "route_deadline",
        "inner", "transport", "paused", "stopped_here", "delivering",
        "_owner", "_due", "_call", "_args", "_seq",  # its timer's (`Timed`)
    )  # fmt: skip

    def body_over(self, ok: bool, error: Optional[str]) -> None:
        raise NotImplementedError

    # -- the head ------------------------------------------------------------------

    def wait_head(self, on_timeout: Callable[[], None]) -> None:
        """Start the read timeout: no head within it calls `on_timeout()` (which cancels the attempt)."""
        self.on_timeout = on_timeout
        self.timer = self.timers.arm(self, self.clock.seconds() + self.idle, self._expired)

    def wait_head_within(self, on_timeout: Callable[[], None], deadline: Any, now: float) -> None:
        """
        `wait_head` on one timer with the route timeout not yet armed
        (`deadline`: the exchange), due at whichever comes first: the route's
        expiry goes to ``deadline.route_expired()`` (the exchange cancels the
        call), the read timeout's to `on_timeout` as with `wait_head`.
        `now`: the clock's time, read by the caller already.
        """
        self.on_timeout = on_timeout
        due = now + self.idle
        if deadline.due <= due:
            due = deadline.due
            self.route_deadline = deadline
        self.timer = self.timers.arm(self, due, self._expired)

    def took_whole(self) -> None:
        """The exchange answered with `whole_body` (no delivery): the body is over, cleanly."""
        timer = self.timer
        if timer is not None:  # (`stop_timer`: the route's deadline went with the head)
            self.timer = None
            timer.cancel()
        self.body_over(True, None)

    def handed_over(self) -> None:
        """
        The exchange has the head (and usually asked for the body in the
        same breath, which took the head's timer over for it): a body nobody
        reads yet waits with no timer pending; delivering it starts one.
        """
        if self.inner is None and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # -- the response face -----------------------------------------------------------

    @property
    def trailers(self) -> Any:
        """The response's trailer fields once its body is over (None when it has none or cannot have them)."""
        return getattr(self._response, "trailers", None)

    # No __getattr__ passing the rest on: a class with one is slower at every
    # attribute of its own (CPython cannot specialise those reads), and this
    # one's are read all along the body's way.

    @property
    def request(self) -> Any:
        return getattr(self._response, "request", None)

    @property
    def previousResponse(self) -> Any:
        return getattr(self._response, "previousResponse", None)

    def deliverBody(self, protocol: Any) -> None:
        self.inner = protocol
        self.delivering = True
        self._response.deliverBody(self)
        self.delivering = False
        if self.inner is not None and self.transport is not None:
            # The body goes on after what had arrived with the head (delivered
            # just now): only such a body needs the timer.
            self._start_timer()

    def detach(self, protocol: Any) -> None:
        """
        A ``101``: the connection goes to `protocol` (a WebSocket tunnel);
        the attempt (in flight, breaker) is over when that connection ends.
        """
        self.stop_timer()
        self._response.detach(_Detached(protocol, self.body_over))

    # -- the producer the exchange's protocol sees ---------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True
        self.stop_timer()
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self._start_timer()
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.stopped_here = True
        self.stop_timer()
        self.transport.stopProducing()

    def loseConnection(self) -> None:
        self.stopProducing()

    def abortConnection(self) -> None:
        self.stopProducing()

    # -- the timer ---------------------------------------------------------------------

    def _start_timer(self) -> None:
        if not self.stopped_here and not self.paused:
            self.last = now = self.clock.seconds()
            if self.timer is None:
                self.timer = self.timers.arm(self, now + self.idle, self._expired)
            # else the head's, due no later than now + idle: it re-arms itself for the rest when it fires

    def stop_timer(self) -> None:
        self.route_deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if self._response is None:  # no head within the read timeout, or the route's
            route, self.route_deadline = self.route_deadline, None
            if route is not None:  # the route timeout came first: not this attempt's failure
                self.on_timeout = None
                route.route_expired()
                return
            self.timed_out = True
            on_timeout, self.on_timeout = self.on_timeout, None
            if on_timeout is not None:
                on_timeout()
            return
        if self.inner is None:
            return  # not delivered (yet): delivering it starts the wait
        due = self.last + self.idle
        if due > self.clock.seconds():  # a chunk came meanwhile: wait for the rest of its window
            self.timer = self.timers.arm(self, due, self._expired)
            return
        self.timed_out = True
        self.transport.stopProducing()

    # -- the body protocol (the upstream response delivers to it) ------------------------

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        if not self.delivering:  # else the timer starts once `deliverBody` handed over what is here already
            self._start_timer()
        self.inner.makeConnection(self)

    def dataReceived(self, data: bytes) -> None:
        if self.timer is not None:
            self.last = self.clock.seconds()
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.stop_timer()
        if self.timed_out:
            reason = Failure(BodyIdleTimeout())
            self.body_over(False, "no body bytes within the read timeout")
        elif body_ended_cleanly(reason) or self.stopped_here:
            self.body_over(True, None)
        else:
            self.body_over(False, f"body broken off: {describe(reason)}")
        inner, self.inner = self.inner, None  # no cycle through the inner protocol (it holds us as its producer)
        inner.connectionLost(reason)


class _Detached(Protocol):
    """A switched connection's protocol, reporting its end to the attempt (a success: it switched)."""

    def __init__(self, inner: Any, outcome: BodyOutcome) -> None:
        self.inner = inner
        self.outcome = outcome

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.inner.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.outcome(True, None)
        self.inner.connectionLost(reason)
