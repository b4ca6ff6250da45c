"""
The HTTP/1.1 server: a Twisted `Protocol` on httptools (llhttp).

Each request head is found by the engine (the first CRLFCRLF) and parsed by
llhttp with every leniency off, plus the checks in `framing`; bodies are
framed by the engine (Content-Length, or its own strict chunked decoder) and
stream into a `StreamingBody`.  Knowing every message boundary itself is
what makes pipelining simple and safe: the next head is not even parsed
until the current response is finished, and what follows waits in a
bounded buffer (the transport is paused above it).

States: HEAD (waiting for or reading a head), BODY (reading the current
request's body), WAIT (the body is read; the response is being written).
One lazy timer serves the idle, header and body timeouts.  Back-pressure
both ways (pausing reads, pausing the response's producer) is
`twistgate.engine.flow.ConnectionFlow`, a base of the protocol.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from twisted.internet.interfaces import IProtocol, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.engine.chunked import ChunkedDecoder
from twistgate.engine.deadline import Deadline
from twistgate.engine.flow import PIPELINE_PAUSE, ConnectionFlow, ReadFlow, WriteFlow
from twistgate.engine.framing import error_response
from twistgate.engine.head import RequestHeadParser
from twistgate.engine.limits import ServerLimits
from twistgate.engine.request import ServerRequest
from twistgate.engine.writer import SocketWriter
from twistgate.errors import GatewayError, PayloadTooLarge, RequestTimeout
from twistgate.upstream.body import BodyAborted, StreamingBody

__all__ = ["HTTP1ServerFactory", "HTTP1ServerProtocol"]

_log = Logger()

_HEAD, _BODY, _WAIT = range(3)
_IDLE_TIMER, _HEADER_TIMER, _BODY_TIMER = range(1, 4)
_PIPELINE_BUFFER = 64 * 1024  # bytes of later requests held while a response is written

Handler = Callable[[ServerRequest], Any]


class HTTP1ServerProtocol(ConnectionFlow, Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, factory: "HTTP1ServerFactory") -> None:
        self._handler = factory.handler
        self._limits = factory.limits
        self._clock = factory.clock
        self._on_connection = factory.on_connection
        self._body_cap = factory.body_cap
        self._own_headers = factory.own_headers
        self.listener = factory.listener
        self.secure = factory.secure
        self.client: Tuple[str, int] = ("", 0)
        self._state = _HEAD
        self._buffer = b""
        self._scanned = 0  # bytes of a partial head already searched for its end
        self._heads = RequestHeadParser(self._limits)
        self._current: Optional[ServerRequest] = None
        self._body_left = 0
        self._chunks: Optional[ChunkedDecoder] = None
        self._last_body = 0.0
        self._in_process = False
        self._closing = False
        self._paused = 0
        self._write_paused = False
        self._producer: Optional[IPushProducer] = None
        self._upgraded: Optional[IProtocol] = None
        self._deadline = Deadline(self._clock, self._deadline_passed)
        self._read_flow = ReadFlow(self)

    # -- connection ----------------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        peer = transport.getPeer()
        self.client = (getattr(peer, "host", ""), getattr(peer, "port", 0))
        self.out = SocketWriter(transport, self._clock)
        transport.registerProducer(WriteFlow(self), True)
        if self._on_connection is not None:
            self._on_connection(1)
        self._deadline.set(_IDLE_TIMER, self._limits.idle_timeout)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._closing = True
        self._deadline.cancel()
        upgraded = self._upgraded
        if upgraded is not None:
            upgraded.connectionLost(reason)
        request, self._current = self._current, None
        if request is not None and not request.finished:
            if request.body is not None and not request.body_complete:
                request.body.abort(BodyAborted("client went away"))
            request._settle(reason)
        if self._on_connection is not None:
            self._on_connection(-1)

    def dataReceived(self, data: bytes) -> None:
        if self._upgraded is not None:
            self._upgraded.dataReceived(data)
            return
        if self._closing:
            return
        self._buffer = self._buffer + data if self._buffer else data
        if not self._in_process:
            self._process()

    # -- parsing -------------------------------------------------------------------

    def _process(self) -> None:
        self._in_process = True
        try:
            while not self._closing:
                state = self._state
                if state == _HEAD:
                    if not self._next_head() or not self._buffer:
                        break  # (with nothing buffered, no state has anything to do)
                elif state == _BODY:
                    if not self._read_body():
                        break
                else:
                    if len(self._buffer) > _PIPELINE_BUFFER:
                        self.pause_reading(PIPELINE_PAUSE)
                    break
        except GatewayError as error:
            self._reject(error)
        finally:
            self._in_process = False

    def _next_head(self) -> bool:
        buf = self._buffer
        scanned = self._scanned
        if not scanned and buf.startswith(b"\r\n"):
            skip = 2  # RFC 9112 §2.2: empty lines before a request line are ignored
            while buf.startswith(b"\r\n", skip):
                skip += 2
            buf = buf[skip:]
        if not buf:
            self._buffer = b""
            return False
        # Search only what was not searched before: a head trickling in byte
        # by byte must not cost quadratic time.
        end = buf.find(b"\r\n\r\n", scanned)
        if end < 0:
            self._buffer = buf
            self._heads.check_partial(buf, scanned)
            self._scanned = max(len(buf) - 3, 0)
            if self._deadline.kind != _HEADER_TIMER:
                self._deadline.set(_HEADER_TIMER, self._limits.header_timeout)
            return False
        self._buffer = buf[end + 4 :]
        self._scanned = 0
        self._deadline.clear()
        self._start_request(self._new_request(buf[: end + 4]))
        return True

    def _new_request(self, head: bytes) -> ServerRequest:
        cap = self._body_cap()
        method, target, version, headers, keep_alive, expects_continue, chunked, length = self._heads.parse(head, cap)
        body = None
        if chunked:
            body = StreamingBody(None, self._read_flow)
            self._chunks = ChunkedDecoder(cap, self._limits.max_header_bytes)
        elif length:
            body = StreamingBody(length, self._read_flow)
            self._body_left = length
        return ServerRequest(self, method, target, version, headers, keep_alive, expects_continue, body, cap)

    # -- bodies ----------------------------------------------------------------

    def _start_request(self, request: ServerRequest) -> None:
        self._current = request
        if request.body is not None:
            self._state = _BODY
            self._last_body = self._clock.seconds()
            self._deadline.set(_BODY_TIMER, self._limits.body_timeout)
        else:
            self._state = _WAIT
        try:
            self._handler(request)
        except Exception:
            _log.failure("request handler failed for {target!r}", target=request.target)
            if not request.started_writing and not request.finished:
                self._reject(GatewayError())
            else:
                self.abort()

    def _read_body(self) -> bool:
        buf = self._buffer
        if not buf:
            return False
        decoder = self._chunks
        if decoder is None:
            left = self._body_left
            if len(buf) <= left:
                self._buffer = b""
                piece = buf
            else:
                self._buffer = buf[left:]
                piece = buf[:left]
            self._body_left = left - len(piece)
            self._deliver(piece)
            if self._body_left:
                return False
        else:
            self._buffer = b""
            rest = decoder.feed(buf, self._deliver)
            if rest is None:
                return False
            self._buffer = rest
            self._chunks = None
        self._body_done()
        return True

    def _deliver(self, piece: bytes) -> None:
        request = self._current
        if request is None:
            return
        self._last_body = self._clock.seconds()
        request.received_bytes += len(piece)
        if request.received_bytes > request.max_body:
            raise PayloadTooLarge()  # the route's own limit (known once routed), below the listener's cap
        body = request.body
        if body is not None and not request.finished:
            body.write(piece)

    def _body_done(self) -> None:
        request = self._current
        self._deadline.clear()
        self._state = _WAIT
        if request is not None:
            request.body_complete = True
            if request.body is not None and not request.finished:
                request.body.finish()

    # -- the response side -----------------------------------------------------------

    def must_close(self, request: ServerRequest) -> bool:
        """Whether the connection must close after ``request``'s response (said in its head)."""
        return self._closing or not request.body_complete

    def response_finished(self, request: ServerRequest) -> None:
        if request is not self._current:
            return
        self._current = None
        self._producer = None
        if not request.keep_alive or not request.body_complete or self._closing:
            if not request.body_complete and request.body is not None:
                request.body.abort(BodyAborted("answered before the body was complete"))
            self._close()
            return
        self._state = _HEAD
        if self._paused:
            self.resume_reading(PIPELINE_PAUSE)
        if not self._buffer:
            self._deadline.set(_IDLE_TIMER, self._limits.idle_timeout)
        elif not self._in_process:
            self._process()  # a pipelined request waits

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.out.discard()
            self.transport.abortConnection()

    def hand_over(self, protocol: IProtocol) -> None:
        """Stop speaking HTTP: ``protocol`` gets the transport and every byte after the head."""
        self._upgraded = protocol
        self._current = None
        self._deadline.clear()
        self._state = _WAIT
        transport = self.transport
        self.out.queue_only()
        transport.unregisterProducer()
        if self._paused:
            self._paused = 0
            transport.resumeProducing()
        protocol.makeConnection(transport)
        rest, self._buffer = self._buffer, b""
        if rest:
            protocol.dataReceived(rest)

    def _reject(self, error: GatewayError) -> None:
        """Answer with the gateway's JSON error (unless a response started), then close."""
        self._deadline.clear()
        request, self._current = self._current, None
        if request is not None and not request.finished:
            started = request.started_writing
            unread = request.body if request.body is not None and not request.body_complete else None
            if not started:
                request.code = error.status
            # Settled first: the gateway learns the engine answered (the
            # request is over) before the body's abort reaches the upstream
            # side, so no second answer races this one.
            request._settle(Failure(error))
            if unread is not None:
                unread.abort(BodyAborted(error.message))
            if started:
                self.abort()
                return
        if self._closing or self.transport is None:
            return
        self.out.write(error_response(error, self._own_headers(self.secure)))
        self._close()

    def _close(self) -> None:
        self._closing = True
        self._buffer = b""
        self._deadline.clear()
        self.out.flush()  # what this pass wrote goes first
        # A transport with a (paused) producer resumes it instead of closing once drained.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    # -- timeouts ----------------------------------------------------------------

    def _deadline_passed(self, kind: int, now: float) -> Optional[float]:
        if kind == _BODY_TIMER:
            if self._paused:
                self._last_body = now  # the gateway is not reading: not the client's fault
            due = self._last_body + self._limits.body_timeout
            if now < due:
                return due
        if kind == _IDLE_TIMER:
            self._close()
        else:
            self._reject(RequestTimeout())
        return None


class HTTP1ServerFactory(Factory):
    """
    Builds `HTTP1ServerProtocol`s for one listener.

    :param handler: called with each `ServerRequest` once its head is
        complete (the body streams after); it answers through the request.
    :param limits: the edge limits.
    :param clock: timeouts run on it.
    :param secure: whether the listener is TLS (`ServerRequest.secure`).
    :param on_connection: called with +1 / -1 as connections open and close.
    :param listener: the listener's name (`ServerRequest.listener`).
    :param body_cap: ``() -> int``: the most body any route accepts now
        (read before routing); default ``limits.max_request_body``.  Once
        routed, a request's own ``max_body`` applies.
    :param own_headers: ``(secure) -> pairs``: headers the engine's own
        answers (400, 408, 413, 414, 431) carry (``defaults``).
    """

    noisy = False

    def __init__(
        self,
        handler: Handler,
        *,
        limits: ServerLimits,
        clock: IReactorTime,
        secure: bool = False,
        on_connection: Optional[Callable[[int], None]] = None,
        listener: str = "",
        body_cap: Optional[Callable[[], int]] = None,
        own_headers: Optional[Callable[[bool], Any]] = None,
    ) -> None:
        self.listener = listener
        self.body_cap = body_cap if body_cap is not None else (lambda: limits.max_request_body)
        self.own_headers = own_headers if own_headers is not None else (lambda secure: ())
        self.handler = handler
        self.limits = limits
        self.clock = clock
        self.secure = secure
        self.on_connection = on_connection

    def buildProtocol(self, addr: Any) -> HTTP1ServerProtocol:
        protocol = HTTP1ServerProtocol(self)
        protocol.factory = self
        return protocol
