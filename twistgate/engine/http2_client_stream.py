"""
One request on an upstream HTTP/2 connection (`H2ClientStream`), from its
HEADERS to the end of the response, and the response it gives the gateway
(`H2Response`, the `UpstreamResponse` shape of `twistgate.upstream.client`).

Flow control both ways: the request body is sent as the upstream's windows
allow and its producer is paused past `HIGH_WATER` queued bytes; response
DATA is acknowledged only as the body's protocol takes it, so a paused
relay holds the upstream by its window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import implementer

from twistgate.engine.http2_common import STREAM_GONE, from_h2_fields, response_problem, send_within_window, to_h2_fields
from twistgate.headers import Headers
from twistgate.http import reason_phrase

if TYPE_CHECKING:
    from twistgate.engine.http2_client import H2TargetPool
    from twistgate.engine.http2_client_connection import H2ClientProtocol

__all__ = ["H2ClientStream", "H2Response", "StreamRefused", "UpstreamProtocolError"]

#: Request-body bytes queued for want of window before the body's producer is paused.
HIGH_WATER = 64 * 1024


class StreamRefused(ConnectError):
    """The upstream did not process the request (REFUSED_STREAM, or beyond its GOAWAY): safe to send again."""


class UpstreamProtocolError(ConnectionLost):
    """The upstream broke HTTP/2 (a malformed response, a connection error)."""


@implementer(IPushProducer)
class _BodyTransport:
    """What a response body's protocol sees as its transport: pausing it holds the stream's window."""

    def __init__(self, stream: "H2ClientStream") -> None:
        self._stream = stream

    def pauseProducing(self) -> None:
        self._stream.reading_paused = True

    def resumeProducing(self) -> None:
        stream = self._stream
        stream.reading_paused = False
        stream.deliver()

    def stopProducing(self) -> None:
        self._stream.stop()


class H2Response:
    """An upstream response (the `UpstreamResponse` shape of `twistgate.upstream.client`)."""

    version = (b"HTTP", 2, 0)

    def __init__(self, stream: "H2ClientStream", code: int, headers: Headers) -> None:
        self._stream = stream
        self.code = code
        self.phrase = reason_phrase(code)
        self.headers = headers
        self.trailers: Optional[Headers] = None
        values = headers.raw.get(b"Content-Length")
        length: Any = UNKNOWN_LENGTH
        if values:
            try:
                length = int(values[0])
            except ValueError:
                length = UNKNOWN_LENGTH
        self.length = length

    def deliverBody(self, protocol: Any) -> None:
        self._stream.deliver_to(protocol)


@implementer(IConsumer)
class H2ClientStream:
    """One request on an upstream connection, from its HEADERS to the end of the response."""

    def __init__(
        self,
        pool: "H2TargetPool",
        method: bytes,
        fields: List[Tuple[bytes, bytes]],
        body: Any,
        interim: Optional[Callable[[int, Headers], None]],
    ) -> None:
        self.pool = pool
        self.method = method
        self.fields = fields
        self.body = body
        self.interim = interim
        self.result: Deferred[Any] = Deferred(self._cancel)
        self.connection: Optional[H2ClientProtocol] = None
        self.stream_id = 0
        self.response: Optional[H2Response] = None
        self.protocol: Any = None  # the body protocol, once deliverBody was called
        self.pending: List[bytes] = []  # response DATA not yet delivered
        self.unacked = 0
        self.reading_paused = False
        self.ended: Optional[Failure] = None  # how the response ended, not yet delivered
        self.done = False
        self.redispatched = False
        # request body
        self.out_queue: List[bytes] = []
        self.out_queued = 0
        self.out_end = False
        self.body_paused = False
        self.body_over = body is None  # the body's producer has finished (or failed)
        self.producer: Any = None

    # -- the request ------------------------------------------------------------

    def start(self, connection: "H2ClientProtocol") -> None:
        self.connection = connection
        h2 = connection.h2
        self.stream_id = sid = h2.get_next_available_stream_id()
        connection.streams[sid] = self
        end = self.body is None
        try:
            h2.send_headers(sid, self.fields, end_stream=end)
        except ProtocolError as error:
            del connection.streams[sid]
            self.fail(Failure(StreamRefused(f"cannot open a stream: {error}")))
            return
        connection.write_out()
        if not end:
            d = self.body.startProducing(self)
            d.addCallbacks(self._body_done, self._body_failed)

    def _body_done(self, _: Any) -> None:
        self.body_over = True
        if not self.done:
            self.out_end = True
            self.flush()

    def _body_failed(self, failure: Failure) -> None:
        self.body_over = True
        if not self.done:
            self.reset(ErrorCodes.CANCEL)
            self.fail(failure)

    # IConsumer: the request body writes here

    def write(self, data: bytes) -> None:
        if self.done or not data:
            return
        self.out_queue.append(data)
        self.out_queued += len(data)
        self.flush()
        if self.out_queued > HIGH_WATER and not self.body_paused and not self.body_over:
            self.body_paused = True
            self.body.pauseProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def flush(self) -> None:
        """Send what the windows allow of the request body; then its end (and trailers)."""
        connection = self.connection
        if connection is None or self.done or connection.lost:
            return
        h2 = connection.h2
        sid = self.stream_id
        queue = self.out_queue
        try:
            self.out_queued -= send_within_window(h2, sid, queue)
            if not queue and self.out_end:
                self.out_end = False
                trailers = getattr(self.body, "trailers", None)
                if trailers:
                    h2.send_headers(sid, to_h2_fields([], trailers), end_stream=True)
                else:
                    h2.end_stream(sid)
        except STREAM_GONE:
            queue.clear()
            self.out_queued = 0
        connection.write_out()
        if self.body_paused and self.out_queued <= HIGH_WATER // 2 and not self.body_over and not connection.paused:
            self.body_paused = False
            self.body.resumeProducing()

    # -- the response ------------------------------------------------------------------

    def head(self, fields: List[Tuple[bytes, bytes]]) -> None:
        problem = response_problem(fields)
        if problem is not None:
            self.reset(ErrorCodes.PROTOCOL_ERROR)
            self.fail(Failure(UpstreamProtocolError(f"malformed response: {problem}")))
            return
        status = int(dict(fields)[b":status"])
        headers = from_h2_fields(fields)
        if status < 200:
            if self.interim is not None and status != 101:
                self.interim(status, headers)
            return
        if self.response is not None:
            return
        self.response = H2Response(self, status, headers)
        if self.method == b"HEAD" or status in (204, 304):
            self.response.length = 0
        self.result.callback(self.response)

    def data(self, data: bytes, flow_controlled: int) -> None:
        if self.done:
            self.connection.acknowledge(self.stream_id, flow_controlled)  # type: ignore[union-attr]
            return
        self.pending.append(data)
        self.unacked += flow_controlled
        self.deliver()

    def trailers(self, fields: List[Tuple[bytes, bytes]]) -> None:
        if self.response is not None:
            self.response.trailers = from_h2_fields(fields)

    def end(self, reason: Failure) -> None:
        """The response is over (END_STREAM, reset, connection lost)."""
        if self.response is None:
            self.fail(reason if not reason.check(ResponseDone) else Failure(UpstreamProtocolError("stream ended without a response")))
            return
        if self.ended is None:
            self.ended = reason
        self.deliver()

    def deliver_to(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(_BodyTransport(self))
        self.deliver()

    def deliver(self) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        while self.pending and not self.reading_paused:
            protocol.dataReceived(self.pending.pop(0))
        if not self.reading_paused and self.unacked and self.connection is not None:
            unacked, self.unacked = self.unacked, 0
            self.connection.acknowledge(self.stream_id, unacked)
        if not self.pending and self.ended is not None and not self.done:
            self._finish()
            protocol.connectionLost(self.ended)

    def _finish(self) -> None:
        self.done = True
        connection = self.connection
        if connection is not None:
            connection.stream_over(self)
        self._stop_body()

    def _stop_body(self) -> None:
        """The exchange is over before the request body: stop reading it."""
        if not self.body_over:
            self.body_over = True
            try:
                self.body.stopProducing()
            except Exception:
                pass

    def stop(self) -> None:
        """The gateway no longer wants the response (client gone, timeout): cancel the stream."""
        if self.done:
            return
        self.reset(ErrorCodes.CANCEL)
        self.pending = []
        self.ended = Failure(ResponseFailed([Failure(ConnectionDone("response stopped by the gateway"))]))
        self.deliver()

    # -- failure ------------------------------------------------------------------------

    def reset(self, code: int) -> None:
        connection = self.connection
        if connection is not None and not connection.lost and self.stream_id:
            try:
                connection.h2.reset_stream(self.stream_id, code)
            except STREAM_GONE:
                pass
            connection.write_out()

    def fail(self, reason: Failure) -> None:
        """Before the response head: the request's Deferred fails."""
        if self.done:
            return
        self._finish()
        if not self.result.called:
            self.result.errback(reason)

    def _cancel(self, _: Any) -> None:
        # Deferred errbacks with CancelledError after this.
        if not self.done:
            self.reset(ErrorCodes.CANCEL)
            self.done = True
            if self.connection is not None:
                self.connection.stream_over(self)
            else:
                self.pool.forget(self)
            self._stop_body()
