"""
Watching an upstream response's body on its way to the client.

`WatchedResponse` stands in for Twisted's `IResponse`: everything is the
response's own, except that the body protocol is wrapped, so that

* the read timeout also bounds each gap between body chunks (the timer is
  suspended while the client's back-pressure pauses the upstream);
* the attempt learns how the body ended (complete, broken off by the
  upstream, or stopped by the gateway) for breakers, outlier detection and
  the in-flight count that least_connections balances on.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twistgate.errors import UpstreamTimeout
from twistgate.relay import body_ended_cleanly
from twistgate.timers import Timers
from twistgate.upstream.failures import describe

#: Called once with (ok, error text) when the body is over.
BodyOutcome = Callable[[bool, Optional[str]], None]


class BodyIdleTimeout(UpstreamTimeout):
    default_message = "The upstream service stopped sending the response body."


class WatchedResponse:
    """An `IResponse` whose body is watched (see the module docstring)."""

    __slots__ = ("_response", "_outcome", "_idle", "_timers", "code", "phrase", "headers", "length", "version")

    def __init__(self, response: Any, outcome: BodyOutcome, idle: float, timers: Timers) -> None:
        self._response = response
        self._outcome = outcome
        self._idle = idle
        self._timers = timers
        self.code = response.code
        self.phrase = response.phrase
        self.headers = response.headers
        self.length = response.length
        self.version = response.version

    @property
    def trailers(self) -> Any:
        """The response's trailer fields once its body is over (None when it has none or cannot have them)."""
        return getattr(self._response, "trailers", None)

    def __getattr__(self, name: str) -> Any:
        # request, previousResponse, _transport (read by the exchange)...
        return getattr(self._response, name)

    def deliverBody(self, protocol: Any) -> None:
        self._response.deliverBody(_BodyWatch(protocol, self._outcome, self._idle, self._timers))

    def detach(self, protocol: Any) -> None:
        """
        A ``101``: the connection goes to `protocol` (a WebSocket tunnel);
        the attempt (in flight, breaker) is over when that connection ends.
        """
        self._response.detach(_Detached(protocol, self._outcome))


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


@implementer(IPushProducer)
class _BodyWatch:
    """
    The body protocol between the upstream response and the gateway's own
    (`inner`), and the producer `inner` sees: pauses and stops are noted on
    their way to the upstream transport.

    The idle timer is lazy: a chunk only notes the time, and a timer that
    fires early re-arms itself for the rest, so a body of many chunks costs
    one timer, not one reset per chunk.
    """

    __slots__ = ("inner", "outcome", "idle", "timers", "clock", "timer", "last", "paused", "stopped_here", "timed_out", "transport")

    def __init__(self, inner: Any, outcome: BodyOutcome, idle: float, timers: Timers) -> None:
        self.transport: Any = None
        self.inner = inner
        self.outcome = outcome
        self.idle = idle
        self.timers = timers
        self.clock = timers.clock
        self.timer: Any = None
        self.last = 0.0  # clock time of the last chunk (or of the start / resume)
        self.paused = False
        self.stopped_here = False  # the gateway stopped it (client gone, route timeout, discard)
        self.timed_out = False

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.start_timer()
        self.inner.makeConnection(self)

    # -- the producer `inner` sees --------------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True
        self.stop_timer()
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self.start_timer()
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.stopped_here = True
        self.stop_timer()
        self.transport.stopProducing()

    def loseConnection(self) -> None:
        self.stopProducing()

    def abortConnection(self) -> None:
        self.stopProducing()

    # -- the idle timer ----------------------------------------------------------

    def start_timer(self) -> None:
        if self.timer is None and not self.stopped_here and not self.paused:
            self.last = now = self.clock.seconds()
            self.timer = self.timers.call_at(now + self.idle, self._expired)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        due = self.last + self.idle
        if due > self.clock.seconds():  # a chunk came meanwhile: wait for the rest of its window
            self.timer = self.timers.call_at(due, self._expired)
            return
        self.timer = None
        self.timed_out = True
        self.transport.stopProducing()

    # -- the body ------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.timer is not None:
            self.last = self.clock.seconds()
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.stop_timer()
        if self.timed_out:
            reason = Failure(BodyIdleTimeout())
            self.outcome(False, "no body bytes within the read timeout")
        elif body_ended_cleanly(reason) or self.stopped_here:
            self.outcome(True, None)
        else:
            self.outcome(False, f"body broken off: {describe(reason)}")
        inner, self.inner = self.inner, None  # no cycle through the inner protocol (it holds us as its producer)
        inner.connectionLost(reason)
