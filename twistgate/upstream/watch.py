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
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from twistgate.errors import UpstreamTimeout
from twistgate.upstream.failures import describe

#: Called once with (ok, error text) when the body is over.
BodyOutcome = Callable[[bool, Optional[str]], None]


class BodyIdleTimeout(UpstreamTimeout):
    default_message = "The upstream service stopped sending the response body."


class WatchedResponse:
    """An `IResponse` whose body is watched (see the module docstring)."""

    __slots__ = ("_response", "_outcome", "_idle", "_clock", "code", "phrase", "headers", "length", "version")

    def __init__(self, response: Any, outcome: BodyOutcome, idle: float, clock: Any) -> None:
        self._response = response
        self._outcome = outcome
        self._idle = idle
        self._clock = clock
        self.code = response.code
        self.phrase = response.phrase
        self.headers = response.headers
        self.length = response.length
        self.version = response.version

    def __getattr__(self, name: str) -> Any:
        # request, previousResponse, _transport (read by the exchange)...
        return getattr(self._response, name)

    def deliverBody(self, protocol: Any) -> None:
        self._response.deliverBody(_BodyWatch(protocol, self._outcome, self._idle, self._clock))

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
class _Producer:
    """The upstream transport as the body protocol sees it: pauses and stops are noted."""

    def __init__(self, transport: Any, watch: "_BodyWatch") -> None:
        self._transport = transport
        self._watch = watch

    def pauseProducing(self) -> None:
        self._watch.paused = True
        self._watch.stop_timer()
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._watch.paused = False
        self._watch.start_timer()
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        self._watch.stopped_here = True
        self._watch.stop_timer()
        self._transport.stopProducing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _BodyWatch(Protocol):
    def __init__(self, inner: Any, outcome: BodyOutcome, idle: float, clock: Any) -> None:
        self.inner = inner
        self.outcome = outcome
        self.idle = idle
        self.clock = clock
        self.timer: Any = None
        self.paused = False
        self.stopped_here = False  # the gateway stopped it (client gone, route timeout, discard)
        self.timed_out = False

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.start_timer()
        self.inner.makeConnection(_Producer(transport, self))

    def start_timer(self) -> None:
        if self.timer is None and not self.stopped_here and not self.paused:
            self.timer = self.clock.callLater(self.idle, self._expired)

    def stop_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        self.timed_out = True
        self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        timer = self.timer
        if timer is not None:
            timer.reset(self.idle)
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.stop_timer()
        if self.timed_out:
            reason = Failure(BodyIdleTimeout())
            self.outcome(False, "no body bytes within the read timeout")
        elif reason.check(ResponseDone, PotentialDataLoss) or self.stopped_here:
            self.outcome(True, None)
        else:
            self.outcome(False, f"body broken off: {describe(reason)}")
        self.inner.connectionLost(reason)
