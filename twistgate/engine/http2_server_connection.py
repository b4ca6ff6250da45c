"""
One client's HTTP/2 connection, on the `h2` library (RFC 9113): its
lifetime (preface, idle timeout, graceful drain, close) and the events it
reads, each turned into a call on one of its streams
(`twistgate.engine.http2_server_stream.H2Stream`).  What the streams ask of
it on the way out is `twistgate.engine.http2_server_output.H2StreamOutput`.

Errors end fast and precisely: a connection error is a GOAWAY with its RFC
9113 code and the connection closes at once; a malformed request is a
RST_STREAM PROTOCOL_ERROR for that stream alone; the body limit is a 413 on
that stream.  Floods (rapid reset, CVE-2023-44487; CONTINUATION,
CVE-2024-27316; PING/SETTINGS/empty frames) end with GOAWAY
ENHANCE_YOUR_CALM (`twistgate.engine.http2_floods`).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

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
from h2.settings import SettingCodes
from hpack.exceptions import HPACKError
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twistgate.engine.http2_common import (
    acknowledge_data,
    close_transport,
    code_name,
    from_h2_fields,
    goaway_frame,
    new_connection,
    open_connection_window,
    request_problem,
    trailer_problem,
)
from twistgate.engine.http2_floods import FrameScanner, TokenBucket
from twistgate.engine.http2_server_output import H2StreamOutput
from twistgate.engine.http2_server_settings import (
    CONNECTION_WINDOW,
    CONTROL_BURST,
    CONTROL_RATE,
    MAX_CONTINUATIONS,
    RESET_BURST,
    RESET_RATE,
    STREAM_WINDOW,
    H2Settings,
)
from twistgate.engine.http2_server_stream import H2Stream, content_length
from twistgate.errors import GatewayError, HeadersTooLarge, PayloadTooLarge

__all__ = ["H2ServerProtocol"]

# The namespace of the module this came from, so that log lines keep their name.
_log = Logger(namespace="twistgate.engine.http2_server")


@implementer(IPushProducer)
class H2ServerProtocol(H2StreamOutput, Protocol):
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
        self.h2 = new_connection(
            client_side=False,
            settings={
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
        open_connection_window(self.h2, CONNECTION_WINDOW)
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
        _log.info("HTTP/2 connection from {peer} ended: {code} ({reason})", peer=self.peer[0], code=code_name(code), reason=reason)
        self.closing = True
        self.transport.write(goaway_frame(self.h2.highest_inbound_stream_id, code))
        close_transport(self.transport)
        if self.on_error is not None:
            self.on_error(code_name(code))

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
            close_transport(self.transport)

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
                    acknowledge_data(self.h2, event.stream_id, event.flow_controlled_length)
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
                close_transport(self.transport)

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
        if ended and content_length(headers) not in (None, 0):
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

    # -- a stream is over -----------------------------------------------------------

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
                close_transport(self.transport)
            else:
                self._arm_idle()
