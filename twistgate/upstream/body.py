"""
A request body that streams from the client to the upstream.

The client's bytes arrive (`write`) before, while and after the upstream
connection exists; they are buffered only until the upstream starts consuming,
and beyond a small buffer the client's socket is paused, so a large upload
never sits whole in memory.  The upstream transport's back-pressure
(`pauseProducing`) pauses the client in turn.

For retries, `keep_for_replay(limit)` keeps what went upstream (up to
``limit`` bytes) and `attempt()` gives each attempt its own producer view,
rewound to the first byte; a body that outgrew the limit cannot be replayed
(`replayable` is False) and is not retried once sent.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.web.iweb import IBodyProducer
from twisted.python.failure import Failure
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import implementer

from twistgate.headers import Headers

BUFFER_HIGH_WATER = 64 * 1024


class BodyAborted(Exception):
    """The client's body will not be completed (too large, client gone)."""


@implementer(IBodyProducer)
class StreamingBody:
    """An `IBodyProducer` fed by the gateway's request as chunks arrive."""

    #: The request's trailer fields, set by the engine before `finish` (HTTP/2; chunked HTTP/1.1).
    trailers: Optional[Headers] = None

    def __init__(self, length: Optional[int], client: Optional[IPushProducer]) -> None:
        self.length = UNKNOWN_LENGTH if length is None else length
        self._client = client  # the client's transport: paused for back-pressure
        self._buffer: List[bytes] = []
        self._buffered = 0
        self._consumer: Optional[IConsumer] = None
        self._finished: Optional[Deferred[None]] = None
        self._complete = False
        self._failure: Optional[Failure] = None
        self._paused_client = False
        self._upstream_paused = False
        self.received = 0
        #: The client broke the body off (`abort`): an upstream attempt that
        #: fails because of it is not the upstream's failure.
        self.aborted_by_client = False
        self._started = False  # an upstream consumed (some of) it
        self._kept: Optional[List[bytes]] = None  # what went upstream, for a replay
        self._kept_bytes = 0
        self._keep_limit = -1  # -1: keep nothing, never replay once started
        self._epoch = 0  # the current attempt's view (see attempt())
        self._whole: Optional[List["Deferred[None]"]] = None  # waiting for the whole body (request buffering)

    # fed by the gateway request

    def write(self, data: bytes) -> None:
        if self._failure is not None:
            return
        self.received += len(data)
        if self._consumer is not None and not self._buffer and not self._upstream_paused:
            self._send(data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > BUFFER_HIGH_WATER and self._whole is None:
            self._pause_client()

    def finish(self) -> None:
        self._complete = True
        self._settle_whole(None)
        if self._consumer is not None and not self._buffer and self._finished is not None:
            d, self._finished = self._finished, None
            d.callback(None)

    def abort(self, reason: Exception) -> None:
        """The body cannot be completed on the client's side (too large, stalled, client gone): fail the upstream write."""
        self.aborted_by_client = True
        self._failure = Failure(reason)
        self._buffer = []
        self._resume_client()
        self._settle_whole(self._failure)
        if self._finished is not None:
            d, self._finished = self._finished, None
            d.errback(self._failure)

    def whole(self) -> "Deferred[None]":
        """
        Fires once the whole body has arrived (``limits.request_buffering``):
        until then the client is never paused, so the engine's body limit
        is what bounds the memory; fails if the body is aborted.
        """
        d: Deferred[None] = Deferred()
        if self._failure is not None:
            d.errback(self._failure)
        elif self._complete:
            d.callback(None)
        else:
            if self._whole is None:
                self._whole = []
            self._whole.append(d)
            self._resume_client()
        return d

    def _settle_whole(self, failure: Optional[Failure]) -> None:
        waiting, self._whole = self._whole, None
        for d in waiting or ():
            if failure is None:
                d.callback(None)
            else:
                d.errback(failure)

    # IBodyProducer, driven by the upstream connection

    def startProducing(self, consumer: IConsumer) -> "Deferred[None]":
        self._consumer = consumer
        self._started = True
        self._finished = d = Deferred()
        if self._failure is not None:
            self._finished = None
            return fail(self._failure)
        self._flush()
        return d

    def _flush(self) -> None:
        consumer = self._consumer
        if consumer is None or self._upstream_paused:
            return
        buffered, self._buffer, self._buffered = self._buffer, [], 0
        for chunk in buffered:
            self._send(chunk)
        if not self._upstream_paused:
            self._resume_client()
        if self._complete and self._finished is not None:
            d, self._finished = self._finished, None
            d.callback(None)

    def pauseProducing(self) -> None:
        self._upstream_paused = True
        self._pause_client()

    def resumeProducing(self) -> None:
        self._upstream_paused = False
        self._flush()

    def stopProducing(self) -> None:
        # The upstream request was cancelled or failed: stop relaying.
        self._finished = None
        self._consumer = None
        if self.replayable:
            # A retry may send it again: keep what arrives (the buffer
            # limit pauses the client as usual).
            self._upstream_paused = False
            return
        self._failure = self._failure or Failure(BodyAborted("upstream request stopped"))
        self._buffer = []
        self._resume_client()

    # replay, for retries

    def _send(self, chunk: bytes) -> None:
        assert self._consumer is not None
        if self._kept is not None:
            self._kept_bytes += len(chunk)
            if self._kept_bytes > self._keep_limit:
                self._kept = None  # too large to keep: no replay once sent
            else:
                self._kept.append(chunk)
        self._consumer.write(chunk)

    def keep_for_replay(self, limit: int) -> None:
        """Keep up to `limit` bytes of what goes upstream, so a retry can send it again."""
        if not self._started:
            self._keep_limit = limit
            self._kept = []
            self._kept_bytes = 0

    @property
    def replayable(self) -> bool:
        """Whether another attempt can send the whole body from its first byte."""
        return self._failure is None and (not self._started or self._kept is not None)

    def attempt(self) -> "IBodyProducer":
        """A producer for one more attempt, from the first byte (check `replayable` first)."""
        if self._started:
            kept = self._kept or []
            self._buffer = kept + self._buffer
            self._buffered = sum(map(len, self._buffer))
            self._kept, self._kept_bytes = [], 0
            self._consumer = None
            self._finished = None
            self._upstream_paused = False
            self._started = False
        self._epoch += 1
        return _AttemptView(self, self._epoch)

    @property
    def client_paused(self) -> bool:
        """Whether the gateway holds the client back (back-pressure): its silence is not a stall."""
        return self._paused_client

    def _pause_client(self) -> None:
        if not self._paused_client and self._client is not None:
            self._paused_client = True
            self._client.pauseProducing()

    def _resume_client(self) -> None:
        if self._paused_client and self._client is not None:
            self._paused_client = False
            self._client.resumeProducing()


@implementer(IBodyProducer)
class _AttemptView:
    """One attempt's handle on a `StreamingBody`: calls from a stale attempt are ignored."""

    def __init__(self, body: StreamingBody, epoch: int) -> None:
        self._body = body
        self._epoch = epoch
        self.length = body.length

    def _current(self) -> bool:
        return self._body._epoch == self._epoch

    def startProducing(self, consumer: IConsumer) -> "Deferred[None]":
        if not self._current():
            return fail(BodyAborted("a later attempt owns the body"))
        return self._body.startProducing(consumer)

    def pauseProducing(self) -> None:
        if self._current():
            self._body.pauseProducing()

    def resumeProducing(self) -> None:
        if self._current():
            self._body.resumeProducing()

    def stopProducing(self) -> None:
        if self._current():
            self._body.stopProducing()

    @property
    def replayable(self) -> bool:
        return self._current() and self._body.replayable

    @property
    def trailers(self) -> Any:
        return self._body.trailers

    def attempt(self) -> "IBodyProducer":
        """The body again from its first byte (the pool's retry on a fresh connection)."""
        return self._body.attempt()


@implementer(IBodyProducer)
class BytesBody:
    """A body already in memory (HTTP/2 requests, which Twisted buffers)."""

    trailers: Optional[Headers] = None

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> "Deferred[None]":
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass

    replayable = True

    def keep_for_replay(self, limit: int) -> None:
        pass  # in memory already

    def attempt(self) -> "BytesBody":
        return self


@implementer(IBodyProducer)
class WatchedBody:
    """
    One attempt's body with the upstream write timeout (nginx's
    ``proxy_send_timeout``): while the upstream connection refuses more
    bytes (it paused us), a timer runs; `stalled` is called when it expires.
    `sent` is called once the whole body has been written, which is when
    the wait for the response head (the read timeout) starts.
    """

    def __init__(self, body: IBodyProducer, clock: Any, timeout: float, stalled: Any, sent: Any) -> None:
        self._body = body
        self._clock = clock
        self._timeout = timeout
        self._stalled = stalled
        self._sent = sent
        self._timer: Any = None
        self.length = body.length
        self.done = False
        self.sent = False  # the whole body was written
        self.stalled_out = False  # the write timeout expired

    def startProducing(self, consumer: IConsumer) -> "Deferred[None]":
        return self._body.startProducing(consumer).addBoth(self._finished)

    def _finished(self, result: Any) -> Any:
        self._cancel()
        if not self.done and not isinstance(result, Failure):
            self.done = self.sent = True
            self._sent()
        self.done = True
        return result

    def pauseProducing(self) -> None:
        if self._timer is None and not self.done:
            self._timer = self._clock.callLater(self._timeout, self._expired)
        self._body.pauseProducing()

    def resumeProducing(self) -> None:
        self._cancel()
        self._body.resumeProducing()

    def stopProducing(self) -> None:
        self._cancel()
        self.done = True
        self._body.stopProducing()

    @property
    def replayable(self) -> bool:
        return bool(getattr(self._body, "replayable", False))

    @property
    def trailers(self) -> Any:
        """The request's trailers (set by the client's engine when the body ends)."""
        return getattr(self._body, "trailers", None)

    def attempt(self) -> "WatchedBody":
        """The body again from its first byte, watched the same way (the pool's retry on a fresh connection)."""
        return WatchedBody(self._body.attempt(), self._clock, self._timeout, self._stalled, self._sent)

    def stop(self) -> None:
        """The attempt is over (a response head, a failure): no more timers."""
        self._cancel()
        self.done = True

    def _expired(self) -> None:
        self._timer = None
        if not self.done:
            self.done = self.stalled_out = True
            self._stalled()

    def _cancel(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
