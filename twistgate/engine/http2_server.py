"""
The HTTP/2 server engine, on the `h2` library (RFC 9113).

Each stream becomes an `H2Stream`, a `twistgate.engine.api.Downstream`
handed to the same handler as HTTP/1.1 requests (the root resource's
``render``), so every route, policy and plugin works alike.

Flow control both ways:

* request bodies: DATA is acknowledged (WINDOW_UPDATE) as the upstream side
  consumes it; while the body's consumer is paused the stream's window is
  not reopened, so a fast client is held by HTTP/2 itself;
* response bodies: DATA is sent as the client's windows allow; what does not
  fit is queued, and past `STREAM_HIGH_WATER` the registered producer (the
  upstream connection or stream) is paused until the client reopens the
  window.  A paused TCP transport pauses every stream.

Errors end fast and precisely: a connection error is a GOAWAY with its RFC
9113 code and the connection closes at once; a malformed request is a
RST_STREAM PROTOCOL_ERROR for that stream alone; the body limit is a 413 on
that stream.  Floods (rapid reset, CVE-2023-44487; CONTINUATION,
CVE-2024-27316; PING/SETTINGS/empty frames) end with GOAWAY
ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import DenialOfServiceError, ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hpack.exceptions import HPACKError
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twistgate.config.model import LimitsConfig
from twistgate.engine.http2_common import (
    DrainingH2Connection,
    FrameScanner,
    goaway_frame,
    TokenBucket,
    from_h2_fields,
    request_problem,
    to_h2_fields,
    trailer_problem,
)
from twistgate.errors import GatewayError, HeadersTooLarge, PayloadTooLarge, error_response
from twistgate.headers import Headers
from twistgate.http import request_id_from
from twistgate.upstream.body import BodyAborted, StreamingBody

__all__ = ["H2ServerFactory", "H2ServerProtocol", "H2Stream", "H2Settings"]

_log = Logger()

#: Concurrent streams a client may open (SETTINGS_MAX_CONCURRENT_STREAMS); nginx 128, Envoy 100.
MAX_CONCURRENT_STREAMS = 128
#: Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE).
STREAM_WINDOW = 256 * 1024
#: The connection's receive window, opened right after the preface.
CONNECTION_WINDOW = 16 * STREAM_WINDOW
#: Response bytes queued on one stream (window closed) before its producer is paused.
STREAM_HIGH_WATER = 128 * 1024
#: A rapid-reset client: streams it cancels before their answer, as a token bucket.
RESET_BURST, RESET_RATE = 200, 50.0
#: Frames that carry no request (PING, SETTINGS, empty DATA...), as a token bucket.
CONTROL_BURST, CONTROL_RATE = 1000, 500.0
#: A header block may not take more CONTINUATION frames than this.
MAX_CONTINUATIONS = 32

_NO_BODY_STATUS = frozenset({204, 304})


class H2Settings:
    """The engine's limits, from the gateway's `LimitsConfig`."""

    __slots__ = ("max_concurrent_streams", "max_header_bytes", "max_headers", "max_body", "idle_timeout")

    def __init__(self, limits: LimitsConfig, max_concurrent_streams: int = MAX_CONCURRENT_STREAMS) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_body = limits.max_request_body
        self.idle_timeout = limits.idle_timeout


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
            length = _content_length(headers)
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
            self.body = None
            body.abort(BodyAborted("request body too large"))
            self.connection.acknowledge(self, flow_controlled)
            self.connection.refuse(self, PayloadTooLarge())
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
        self._over(Failure(ConnectionDone(f"stream reset by the client ({_code_name(code)})")))

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


def _content_length(headers: Headers) -> Optional[int]:
    values = headers.raw.get(b"Content-Length")
    if not values:
        return None
    try:
        length = int(values[0])
    except ValueError:
        return None
    return length if length >= 0 else None


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


@implementer(IPushProducer)
class H2ServerProtocol(Protocol):
    """One client's HTTP/2 connection (after ALPN ``h2`` or the cleartext preface)."""

    def __init__(
        self, handler: Any, settings: H2Settings, clock: Any, on_connection: Any = None, on_error: Any = None
    ) -> None:
        """:param on_error: called with the error code's name when a GOAWAY ends the connection on an error."""
        self.handler = handler
        self.on_error = on_error
        self.settings = settings
        self.clock = clock
        self.on_connection = on_connection
        self.streams: Dict[int, H2Stream] = {}
        self.paused = False
        self.closing = False
        self.goaway_sent = False
        self.peer: Tuple[str, int] = ("", 0)
        self.secure = False
        self.listener = ""  # set by the factory
        self.blocked: Dict[int, H2Stream] = {}  # streams with bytes queued for want of window
        self.idle_timer: Any = None
        self.resets = TokenBucket(clock, RESET_RATE, RESET_BURST)
        self.scanner = FrameScanner(
            max_block=max(2 * settings.max_header_bytes, 16384),
            max_continuations=MAX_CONTINUATIONS,
            control=TokenBucket(clock, CONTROL_RATE, CONTROL_BURST),
        )
        self.streams_served = 0
        self.draining = False  # GOAWAY due once a stream in flight finishes
        self._drain_now = False
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,  # request_problem(): stream errors, not connection errors
            normalize_inbound_headers=False,
            validate_outbound_headers=False,  # to_h2_fields() builds valid blocks
            normalize_outbound_headers=False,
        )
        self.h2 = DrainingH2Connection(config)
        # In force at once (the client's excess is refused even before it
        # acknowledges them), and what the first SETTINGS frame says.
        self.h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_bytes,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.ENABLE_PUSH: 0,
            },
        )

    # -- connection lifetime ------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        peer = transport.getPeer()
        self.peer = (getattr(peer, "host", ""), getattr(peer, "port", 0))
        self.secure = isinstance(transport, TLSMemoryBIOProtocol)
        if self.on_connection is not None:
            self.on_connection(1)
        transport.registerProducer(self, True)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        # The hard limit on a decoded header list; the advertised one gets a 431.
        self.h2.decoder.max_header_list_size = 2 * self.settings.max_header_bytes
        self.write_out()
        self._arm_idle()

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[assignment]
        self.closing = True
        self._cancel_idle()
        streams, self.streams = self.streams, {}
        self.blocked = {}
        for stream in streams.values():
            stream.connection_lost(reason)
        if self.on_connection is not None:
            self.on_connection(-1)
            self.on_connection = None

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        problem = self.scanner.feed(data)
        if problem is not None:
            self.connection_error(*problem)
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as error:
            self._protocol_error(error)
            return
        for event in events:
            self._dispatch(event)
            if self.closing:
                return
        self.write_out()
        if self.h2.decoder.max_header_list_size != 2 * self.settings.max_header_bytes:
            # h2 applies the advertised limit once the client acknowledged it;
            # the decoder keeps the hard one (see `_request`).
            self.h2.decoder.max_header_list_size = 2 * self.settings.max_header_bytes

    def _protocol_error(self, error: ProtocolError) -> None:
        code = error.error_code
        if isinstance(error.__cause__, HPACKError) and not isinstance(error, DenialOfServiceError):
            code = ErrorCodes.COMPRESSION_ERROR  # RFC 9113 §4.3: h2 says PROTOCOL_ERROR
        elif isinstance(error, StreamClosedError):
            code = ErrorCodes.STREAM_CLOSED
        # h2 has queued its own GOAWAY; ours names the precise code.
        self.h2.data_to_send()
        self.connection_error(code, str(error))

    def connection_error(self, code: int, reason: str) -> None:
        """GOAWAY with `code`, then close at once (RFC 9113 §5.4.1)."""
        if self.closing:
            return
        _log.info("HTTP/2 connection from {peer} ended: {code} ({reason})", peer=self.peer[0], code=_code_name(code), reason=reason)
        self.closing = True
        self.transport.write(goaway_frame(self.h2.highest_inbound_stream_id, code))
        self._close_transport()
        if self.on_error is not None:
            self.on_error(_code_name(code))

    def _close_transport(self) -> None:
        # A TLS transport does not start its shutdown while a producer is registered.
        try:
            self.transport.unregisterProducer()
        except Exception:
            pass
        self.transport.loseConnection()

    def drain(self) -> None:
        """
        Accept no new streams (GOAWAY NO_ERROR); close once the open ones are
        answered.  With streams in flight the GOAWAY waits for the first of
        them to finish (streams opened meanwhile are refused, safe to retry):
        some clients (h2 among them) cannot take a GOAWAY before an answer.
        """
        if self.goaway_sent or self.closing:
            return
        self.draining = True
        if self.streams and not self._drain_now:
            return
        self.goaway_sent = True
        self.write_out()
        self.transport.write(goaway_frame(self.h2.highest_inbound_stream_id, ErrorCodes.NO_ERROR))
        if not self.streams:
            self.closing = True
            self._close_transport()

    def _arm_idle(self) -> None:
        if self.idle_timer is None and not self.closing:
            self.idle_timer = self.clock.callLater(self.settings.idle_timeout, self._idle)

    def _cancel_idle(self) -> None:
        if self.idle_timer is not None:
            if self.idle_timer.active():
                self.idle_timer.cancel()
            self.idle_timer = None

    def _idle(self) -> None:
        self.idle_timer = None
        if not self.streams:
            self._drain_now = True
            self.drain()

    # -- events ---------------------------------------------------------------------

    def _dispatch(self, event: Any) -> None:
        kind = type(event)
        if kind is DataReceived:
            stream = self.streams.get(event.stream_id)
            if stream is None:
                if event.flow_controlled_length:
                    self._ack_closed(event.stream_id, event.flow_controlled_length)
                return
            stream.data_received(event.data, event.flow_controlled_length)  # a StreamEnded may follow
        elif kind is RequestReceived:
            self._request(event)
        elif kind is StreamEnded:
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.body_complete:
                stream.body_ended(None)
        elif kind is TrailersReceived:
            self._trailers(event)
        elif kind is WindowUpdated:
            if event.stream_id == 0:
                self.flush_all()
            else:
                stream = self.blocked.get(event.stream_id)
                if stream is not None:
                    self.flush_stream(stream)
        elif kind is StreamReset:
            self._reset(event)
        elif kind is RemoteSettingsChanged:
            if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                self.flush_all()
        elif kind is ConnectionTerminated:
            self.goaway_sent = True  # the client will open no more streams
            if event.error_code != ErrorCodes.NO_ERROR or not self.streams:
                self.closing = True
                self._close_transport()

    def _request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        fields = event.headers
        problem = request_problem(fields)
        if problem is not None:
            self._refuse_malformed(sid, problem)
            return
        if self.goaway_sent or self.draining:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        pseudo = {name: value for name, value in fields if name[:1] == b":"}
        method = pseudo[b":method"]
        headers = from_h2_fields(fields)
        authority = pseudo.get(b":authority")
        if authority is not None:
            headers.raw[b"Host"] = [authority]  # RFC 9113 §8.3.1: it replaces Host
        ended = event.stream_ended is not None
        stream = H2Stream(self, sid, method, pseudo.get(b":path", b"/"), headers, body_expected=not ended)
        self.streams[sid] = stream
        self.streams_served += 1
        self._cancel_idle()
        size = sum(len(name) + len(value) + 32 for name, value in fields)
        if size > self.settings.max_header_bytes:
            self.refuse(stream, HeadersTooLarge())
            return
        if len(fields) - len(pseudo) > self.settings.max_headers:
            self.refuse(stream, HeadersTooLarge("Too many request header fields."))
            return
        if method == b"CONNECT":
            self.refuse(stream, GatewayError(status=405, code="method_not_allowed", message="CONNECT is not supported."))
            return
        length = stream.body.length if stream.body is not None else None
        if isinstance(length, int) and length > self.settings.max_body:
            stream.body = None
            self.refuse(stream, PayloadTooLarge())
            return
        if ended and _content_length(headers) not in (None, 0):
            self._refuse_malformed(sid, "content-length without a body")
            return
        if getattr(self.handler, "draining", False):
            stream.keep_alive = False
        try:
            self.handler.render(stream)
        except Exception:
            _log.failure("unhandled error handling HTTP/2 stream {sid}", sid=sid)
            self.refuse(stream, GatewayError())
        # Only the gateway draining ends the connection: keep_alive = False
        # for an unread body is handled per stream (RST_STREAM NO_ERROR).
        if getattr(self.handler, "draining", False):
            self.drain()

    def _refuse_malformed(self, sid: int, problem: str) -> None:
        _log.debug("malformed HTTP/2 request on stream {sid}: {problem}", sid=sid, problem=problem)
        try:
            self.h2.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
        except ProtocolError:
            pass

    def _trailers(self, event: TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        problem = trailer_problem(event.headers)
        if problem is not None:
            self.reset_stream(stream, ErrorCodes.PROTOCOL_ERROR)
            stream.reset_by_peer(ErrorCodes.PROTOCOL_ERROR)
            return
        stream.body_ended(from_h2_fields(event.headers))  # h2's StreamEnded that follows finds it complete

    def _reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        if not event.remote_reset:
            # h2 reset it itself (a stream error it detected).
            stream.reset_by_peer(event.error_code)
            return
        if not stream.finished:
            # Cancelled before its answer: the rapid-reset pattern if it repeats.
            if not self.resets.take():
                stream.reset_by_peer(event.error_code)
                self.connection_error(ErrorCodes.ENHANCE_YOUR_CALM, "rapid reset")
                return
        stream.reset_by_peer(event.error_code)

    # -- what streams ask of the connection ------------------------------------------

    def refuse(self, stream: H2Stream, error: GatewayError) -> None:
        """The engine's own answer on one stream (431, 413...), JSON as everywhere."""
        if stream.started_writing or stream.finished:
            self.reset_stream(stream, ErrorCodes.CANCEL if error.status == 413 else ErrorCodes.INTERNAL_ERROR)
            stream.reset_by_peer(ErrorCodes.CANCEL)
            return
        status, headers, body = error_response(error, request_id_from(stream.headers), _http_date(self.clock))
        stream.respond(status, None, headers, body)

    def send_headers(self, stream: H2Stream, fields: List[Tuple[bytes, bytes]], end_stream: bool) -> None:
        try:
            self.h2.send_headers(stream.stream_id, fields, end_stream=end_stream)
        except (ProtocolError, StreamClosedError, KeyError):
            return
        self.write_out()

    def end_stream(self, stream: H2Stream, trailers: Optional[Headers]) -> None:
        try:
            if trailers is not None:
                self.h2.send_headers(stream.stream_id, to_h2_fields([], trailers), end_stream=True)
            else:
                self.h2.end_stream(stream.stream_id)
        except (ProtocolError, StreamClosedError, KeyError):
            return
        self.write_out()

    def reset_stream(self, stream: H2Stream, code: int) -> None:
        if stream._closed:
            return
        stream._closed = True
        try:
            self.h2.reset_stream(stream.stream_id, code)
        except (ProtocolError, StreamClosedError, KeyError):
            return
        self.write_out()

    def acknowledge(self, stream: H2Stream, size: int) -> None:
        if size <= 0:
            return
        try:
            self.h2.acknowledge_received_data(size, stream.stream_id)
        except (ProtocolError, StreamClosedError, KeyError):
            pass

    def _ack_closed(self, sid: int, size: int) -> None:
        try:
            self.h2.acknowledge_received_data(size, sid)
        except (ProtocolError, StreamClosedError, KeyError):
            pass

    def stream_over(self, stream: H2Stream, answered: bool) -> None:
        self.streams.pop(stream.stream_id, None)
        self.blocked.pop(stream.stream_id, None)
        if self.draining and not self.goaway_sent and not self.closing:
            self._drain_now = True
            self.drain()
        if not self.streams:
            if self.goaway_sent and not self.closing:
                self.closing = True
                self.write_out()
                self._close_transport()
            else:
                self._arm_idle()

    def flush_stream(self, stream: H2Stream) -> None:
        """Send what the windows allow of `stream`'s queued body."""
        if stream._done:
            return
        if self.paused:
            self.blocked[stream.stream_id] = stream
            return
        queue = stream._queue
        h2 = self.h2
        sid = stream.stream_id
        sent = False
        try:
            while queue:
                window = min(h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk = queue[0]
                if len(chunk) <= window:
                    queue.pop(0)
                else:
                    queue[0] = chunk[window:]
                    chunk = chunk[:window]
                stream._queued -= len(chunk)
                h2.send_data(sid, chunk)
                sent = True
        except (ProtocolError, StreamClosedError, KeyError):
            stream._queue = []
            stream._queued = 0
            return
        if queue:
            self.blocked[sid] = stream
        else:
            self.blocked.pop(sid, None)
        if sent:
            self.write_out()
        stream._drained()

    def flush_all(self) -> None:
        for stream in list(self.blocked.values()):
            self.flush_stream(stream)

    def write_out(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closing:
            self.transport.write(data)

    # -- IPushProducer: the TCP transport's back-pressure --------------------------------

    def pauseProducing(self) -> None:
        self.paused = True
        for stream in self.streams.values():
            stream._pause_producer()

    def resumeProducing(self) -> None:
        self.paused = False
        for stream in list(self.streams.values()):
            if stream._queue:
                self.flush_stream(stream)
            else:
                stream._drained()

    def stopProducing(self) -> None:
        self.paused = True


def _http_date(clock: Any) -> bytes:
    from twisted.web.http import datetimeToString

    return datetimeToString(clock.seconds())


class H2ServerFactory(Factory):
    """Builds `H2ServerProtocol`s for one listener (used by `engine.protocol_switch`)."""

    def __init__(
        self,
        handler: Any,
        limits: LimitsConfig,
        clock: Any,
        *,
        on_connection: Any = None,
        on_error: Any = None,
        listener: str = "",
    ) -> None:
        """
        :param on_connection: called with +1 / -1 as connections open and close
            (none when behind a `ProtocolSwitchFactory`, which counts).
        :param on_error: called with the RFC 9113 name of each GOAWAY error code sent.
        :param listener: the listener's name (`H2Stream.listener`).
        """
        self.listener = listener
        self.handler = handler
        self.settings = H2Settings(limits)
        self.clock = clock
        self.on_connection = on_connection
        self.on_error = on_error

    def buildProtocol(self, addr: Any) -> H2ServerProtocol:
        protocol = H2ServerProtocol(self.handler, self.settings, self.clock, self.on_connection, self.on_error)
        protocol.listener = self.listener
        protocol.factory = self
        return protocol
