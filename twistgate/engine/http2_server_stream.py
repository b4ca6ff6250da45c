"""
One request on an HTTP/2 server connection: `H2Stream`, the
`twistgate.engine.api.Downstream` the gateway's handler answers, exactly as
it answers an HTTP/1.1 request.

A stream queues its answer and leaves the framing to its connection
(`twistgate.engine.http2_server_connection`): DATA goes out as the
client's windows allow, and past `STREAM_HIGH_WATER` queued bytes the
stream pauses the producer that feeds it (the upstream connection or
stream) until the window reopens.  The request body flows the other way:
the stream acknowledges DATA (WINDOW_UPDATE) only as the body's consumer
takes it, so a paused consumer holds a fast client by its window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from h2.errors import ErrorCodes
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from twistgate.engine.http2_common import code_name, to_h2_fields
from twistgate.engine.http2_server_settings import STREAM_HIGH_WATER
from twistgate.errors import PayloadTooLarge
from twistgate.headers import Headers
from twistgate.upstream.body import BodyAborted, StreamingBody

if TYPE_CHECKING:
    from twistgate.engine.http2_server_connection import H2ServerProtocol

__all__ = ["H2Stream", "content_length"]

_NO_BODY_STATUS = frozenset({204, 304})


class _ContinueBody(StreamingBody):
    """A request body whose client asked for ``100-continue``: sent when the upstream starts reading."""

    def __init__(self, length: Optional[int], stream: "H2Stream") -> None:
        super().__init__(length, stream)
        self._stream: Optional[H2Stream] = stream

    def startProducing(self, consumer: Any) -> Any:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.send_continue()
        return super().startProducing(consumer)


@implementer(IPushProducer)
class H2Stream:
    """One request on an HTTP/2 connection: a `Downstream`."""

    version = b"HTTP/2"
    expects_continue = False  # answered by the engine when the upstream reads the body

    def __init__(
        self,
        connection: "H2ServerProtocol",
        stream_id: int,
        method: bytes,
        target: bytes,
        headers: Headers,
        body_expected: bool,
    ) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition(b"?")
        self.headers = headers
        self.client = connection.peer
        self.secure = connection.secure
        self.transport = connection.transport
        self.listener: str = connection.listener
        #: The most request body allowed (413 on this stream beyond): the
        #: listener's limit until the gateway routes the request and sets the route's.
        self.max_body: int = connection.settings.max_body
        self.keep_alive = True
        self.body: Optional[StreamingBody] = None
        self.body_complete = not body_expected
        self.received_bytes = 0
        self.sent_bytes = 0
        self.code = 0
        self.started_writing = False
        self.finished = False
        #: the request's trailers, once its body ended with them
        self.trailers: Optional[Headers] = None
        self._continue = False
        self._head: Optional[List[Tuple[bytes, bytes]]] = None
        self._head_sent = False
        self._queue: List[bytes] = []
        self._queued = 0
        self._end: Optional[Tuple[Optional[Headers]]] = None  # finish() called: (trailers,)
        self._producer: Any = None
        self._producer_paused = False
        self._reading_paused = False
        self._unacked = 0
        self._waiters: List[Deferred[None]] = []
        self._outcome: Optional[Failure] = None
        self._done = False  # over: answered or reset; `_outcome` says which
        self._closed = False  # h2 no longer knows the stream
        if body_expected:
            length = content_length(headers)
            expect = headers.raw.get(b"Expect")
            if expect is not None and expect[0].lower() == b"100-continue":
                self.body = _ContinueBody(length, self)
            else:
                self.body = StreamingBody(length, self)

    # -- Downstream: answering --------------------------------------------------

    def notify_finish(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        if self._done:
            if self._outcome is None:
                d.callback(None)
            else:
                d.errback(self._outcome)
        else:
            self._waiters.append(d)
        return d

    def send_continue(self) -> None:
        if not self.started_writing and not self._done:
            self.send_interim(100, Headers())

    def send_interim(self, status: int, headers: Headers) -> None:
        if self.started_writing or self._done or not 100 <= status < 200 or status == 101:
            return
        fields = to_h2_fields([(b":status", b"%d" % status)], headers)
        self.connection.send_headers(self, fields, end_stream=False)

    def write_head(self, status: int, reason: Optional[bytes], headers: Headers) -> None:
        if self.started_writing or self._done:
            return
        self.code = status
        self.started_writing = True
        self._head = to_h2_fields([(b":status", b"%d" % status)], headers)

    def respond(self, status: int, reason: Optional[bytes], headers: Headers, body: bytes) -> None:
        if self.started_writing or self._done:
            return
        if body and b"Content-Length" not in headers.raw and status not in _NO_BODY_STATUS:
            headers.raw[b"Content-Length"] = [b"%d" % len(body)]
        self.write_head(status, reason, headers)
        if body and self.method != b"HEAD":
            self.write(body)
        self.finish()

    def write(self, data: bytes) -> None:
        if self._done or self._end is not None or not data:
            return
        self._send_head(end_stream=False)
        self.sent_bytes += len(data)
        self._queue.append(data)
        self._queued += len(data)
        self.connection.flush_stream(self)
        if self._queued > STREAM_HIGH_WATER:
            self._pause_producer()

    def finish(self, trailers: Optional[Headers] = None) -> None:
        """
        The answer is complete; `trailers` (HTTP/2 only) go out after the
        body, in a HEADERS frame with END_STREAM.
        """
        if self._done or self._end is not None:
            return
        if not self.started_writing:
            self.write_head(200, None, Headers())
        if trailers is not None and not trailers.raw:
            trailers = None
        if not self._head_sent and not self._queue and trailers is None:
            self._send_head(end_stream=True)
            self._end = (None,)
            self._answered()
            return
        self._send_head(end_stream=False)
        self._end = (trailers,)
        self.connection.flush_stream(self)

    def abort(self) -> None:
        """The answer cannot be completed: RST_STREAM INTERNAL_ERROR (the connection lives on)."""
        if self._done:
            return
        self.connection.reset_stream(self, ErrorCodes.INTERNAL_ERROR)
        self._over(Failure(ConnectionLost("stream reset by the gateway")))

    def register_producer(self, producer: Any) -> None:
        self._producer = producer
        self._producer_paused = False
        if self._queued > STREAM_HIGH_WATER or self.connection.paused:
            self._pause_producer()

    def unregister_producer(self) -> None:
        self._producer = None
        self._producer_paused = False

    # -- sending, driven by the connection -----------------------------------------

    def _send_head(self, end_stream: bool) -> None:
        if self._head_sent:
            return
        self._head_sent = True
        fields, self._head = self._head, None
        assert fields is not None
        self.connection.send_headers(self, fields, end_stream=end_stream)

    def _pause_producer(self) -> None:
        if self._producer is not None and not self._producer_paused:
            self._producer_paused = True
            self._producer.pauseProducing()

    def _resume_producer(self) -> None:
        if self._producer is not None and self._producer_paused:
            self._producer_paused = False
            self._producer.resumeProducing()

    def _drained(self) -> None:
        """Called by the connection after a flush: queued bytes went out."""
        if self._queued <= STREAM_HIGH_WATER // 2 and not self.connection.paused:
            self._resume_producer()
        if not self._queue and self._end is not None and not self._done:
            trailers = self._end[0]
            self.connection.end_stream(self, trailers)
            self._answered()

    def _answered(self) -> None:
        self._over(None)
        if not self.body_complete:
            # Answered before the client finished sending (RFC 9113 §8.1):
            # ask it to stop, without error.
            self.connection.reset_stream(self, ErrorCodes.NO_ERROR)
            if self.body is not None:
                self.body.abort(BodyAborted("answered before the body was complete"))

    def _over(self, outcome: Optional[Failure]) -> None:
        if self._done:
            return
        self._done = True
        self.finished = True
        self._outcome = outcome
        self._queue = []
        self._queued = 0
        self.connection.stream_over(self, outcome is None)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if outcome is None:
                d.callback(None)
            else:
                d.errback(outcome)

    # -- receiving, driven by the connection ---------------------------------------

    def data_received(self, data: bytes, flow_controlled: int) -> None:
        body = self.body
        self.received_bytes += len(data)
        if body is None:
            self.connection.acknowledge(self, flow_controlled)
            return
        if self.received_bytes > self.max_body:
            # 413 first: aborting the body fails the upstream request at once,
            # whose 400 must not answer before it (as on HTTP/1.1).
            self.body = None
            self.connection.acknowledge(self, flow_controlled)
            self.connection.refuse(self, PayloadTooLarge())
            body.abort(BodyAborted("request body too large"))
            return
        body.write(data)
        if self._reading_paused:
            self._unacked += flow_controlled
        else:
            self.connection.acknowledge(self, flow_controlled)

    def body_ended(self, trailers: Optional[Headers]) -> None:
        self.body_complete = True
        body = self.body
        if body is None:
            return
        declared = body.length
        if isinstance(declared, int) and declared != self.received_bytes:
            # RFC 9113 §8.1.1: a body shorter than its content-length is malformed.
            self.body = None
            body.abort(BodyAborted("request body shorter than its Content-Length"))
            self.connection.reset_stream(self, ErrorCodes.PROTOCOL_ERROR)
            self._over(Failure(ConnectionLost("malformed request body")))
            return
        if trailers is not None:
            self.trailers = trailers
            body.trailers = trailers  # type: ignore[attr-defined]  # see Downstream.body
        body.finish()

    def reset_by_peer(self, code: int) -> None:
        self._closed = True
        if self.body is not None and not self.body_complete:
            self.body.abort(BodyAborted("the client reset the stream"))
        self._over(Failure(ConnectionDone(f"stream reset by the client ({code_name(code)})")))

    def connection_lost(self, reason: Failure) -> None:
        self._closed = True
        if self.body is not None and not self.body_complete:
            self.body.abort(BodyAborted("the client went away"))
        self._over(reason)

    # IPushProducer: the request body's consumer pauses the client

    def pauseProducing(self) -> None:
        self._reading_paused = True

    def resumeProducing(self) -> None:
        self._reading_paused = False
        unacked, self._unacked = self._unacked, 0
        if unacked:
            self.connection.acknowledge(self, unacked)
            self.connection.write_out()

    def stopProducing(self) -> None:
        self._reading_paused = False

    def __repr__(self) -> str:
        return f"<H2Stream {self.stream_id} {self.method.decode('latin-1')} {self.target[:60]!r}>"


def content_length(headers: Headers) -> Optional[int]:
    """A request's declared body length; None when absent or unusable (then the body ends with the stream)."""
    values = headers.raw.get(b"Content-Length")
    if not values:
        return None
    try:
        length = int(values[0])
    except ValueError:
        return None
    return length if length >= 0 else None
