"""
The twisted.web engine's channel and request (``engine: twisted``).

Twisted's stock `Request` reads a whole body (memory, then a temp file)
before anything renders.  A gateway must decide at header time and stream,
so `GatewayRequest` starts processing in `gotLength()` and feeds the body's
chunks to a `StreamingBody` the upstream connection consumes.  This leans on
private parts of `twisted.web.http` (the channel's `_command`, `_path`,
`_version`, `__first_line`, `_receivedHeaderSize`...), which is why it lives
in `twistgate._twisted_compat` (checked at startup by `check()`).  HTTP/2
streams take the stock buffered path, still size-limited.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http_headers import Headers
from twisted.web.http import (
    HTTPChannel,
    _ChunkedTransferDecoder,
    _GenericHTTPChannelProtocol,
    _MalformedChunkedDataError,
    datetimeToString,
)
from h2.exceptions import ProtocolError as H2ProtocolError

from twistgate.config.model import LimitsConfig
from twistgate.errors import (
    BadRequest,
    GatewayError,
    HeadersTooLarge,
    PayloadTooLarge,
    RequestTimeout,
    URITooLong,
    error_body,
)
from twistgate.http import RFC9110Phrases, new_request_id, reason_phrase, request_id_from
from twistgate.upstream.body import BodyAborted, StreamingBody

_log = Logger()


def send_error(request: Any, error: GatewayError, request_id: Optional[str] = None) -> None:
    """Answer `request` with the contract's JSON error body."""
    if request.finished or request._disconnected or request.startedWriting:
        return
    if request_id is None:
        request_id = request_id_from(request.requestHeaders)
    body = error_body(error.code, error.message, request_id)
    headers = Headers()
    raw = headers._rawHeaders
    raw[b"Content-Type"] = [b"application/json"]
    raw[b"Content-Length"] = [b"%d" % len(body)]
    raw[b"X-Request-Id"] = [request_id.encode("ascii")]
    raw[b"Cache-Control"] = [b"no-store"]
    raw[b"Date"] = [datetimeToString()]
    for name, value in error.headers:
        headers.addRawHeader(name, value)
    for name, value in _own_headers(getattr(request, "site", None) or getattr(request.channel, "site", None), request.isSecure()):
        if not headers.hasHeader(name):
            headers.addRawHeader(name, value)
    channel = request.channel
    unread_body = not getattr(request, "body_complete", True)
    # HTTP/2 streams have no `persistent` (nor a Connection header to send).
    if unread_body or (channel is not None and not getattr(channel, "persistent", True)):
        raw[b"Connection"] = [b"close"]
    request.setResponseCode(error.status, reason_phrase(error.status))
    request.responseHeaders = headers
    request.write(body)
    request.finish()


def _own_headers(site: Any, secure: bool) -> Any:
    """What `defaults:` adds to the engine's own refusals (the site knows the serving generation)."""
    own = getattr(site, "own_headers", None)
    return own(secure) if own is not None else ()


class GatewayChannel(HTTPChannel):
    """
    HTTP/1.1 with the gateway's limits: request line (414), header bytes and
    count (431), time to read a request head (408), and JSON bodies for every
    error the channel itself answers.  The framing rules the HTTP/1.1 engine
    on httptools enforces hold here too: exactly one Host on HTTP/1.1 (at
    most one on 1.0) or 400 and close; bare LF line ends refused as soon as
    they arrive (twisted.web's line parser would wait for a CRLF until the
    header timeout); chunk sizes of 1 to 16 hex digits, and a chunk declared
    larger than what the body limit leaves answered 413 before its bytes
    (`_BoundedChunkedDecoder`).
    """

    _header_timer: Any = None
    _refused = False  # answered with an error and closing: nothing more is parsed

    def __init__(self, limits: LimitsConfig) -> None:
        super().__init__()
        self.limits = limits
        self.totalHeadersSize = limits.max_header_bytes
        self.maxHeaders = limits.max_headers
        # A longer line than any limit allows is refused by LineReceiver
        # itself; lineLengthExceeded then answers 414 or 431.
        self.MAX_LENGTH = max(limits.max_request_line, limits.max_header_bytes) + 1

    # limits on the request head

    def dataReceived(self, data: bytes) -> None:
        if (
            self._header_timer is None
            and self._HTTPChannel__first_line  # type: ignore[attr-defined]
            and not self._handlingRequest
        ):
            self._header_timer = self.callLater(self.limits.header_timeout, self._header_timed_out)
        super().dataReceived(data)
        # In line mode every CRLF has been split off as a line; an LF left in
        # the buffer ends a line without CR, and no CRLF may ever come.
        if self.line_mode and not self.paused and not self._refused and b"\n" in self._buffer:
            self._reject(BadRequest("Request lines must end with CRLF."))

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return None
        if b"\n" in line:
            return self._reject(BadRequest("Request lines must end with CRLF."))
        if self._HTTPChannel__first_line:  # type: ignore[attr-defined]
            if len(line) > self.limits.max_request_line:
                return self._reject(URITooLong())
        elif self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            return self._reject(HeadersTooLarge())
        return super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._HTTPChannel__first_line:  # type: ignore[attr-defined]
            self._reject(URITooLong())
        else:
            self._reject(HeadersTooLarge())

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self._reject(HeadersTooLarge("Too many request header fields."))
            return False
        return super().headerReceived(line)

    def allHeadersReceived(self) -> None:
        self._cancel_header_timer()
        request = self.requests[-1]
        hosts = request.requestHeaders.getRawHeaders(b"Host") or []
        if len(hosts) > 1 or (not hosts and self._version == b"HTTP/1.1"):
            self._reject(BadRequest("Exactly one Host header is required."))
            return
        if type(self._transferDecoder) is _ChunkedTransferDecoder:
            self._transferDecoder = _BoundedChunkedDecoder(request, self._finishRequestBody)
        # Read Expect now: a streaming request is processed inside
        # super().allHeadersReceived() and the gateway strips Expect from the
        # headers before Twisted would look for it.
        expect = self.requests[-1].requestHeaders.getRawHeaders(b"Expect")
        wants_continue = bool(expect) and expect[0].lower() == b"100-continue" and self._version == b"HTTP/1.1"
        self._continue_sent = False
        super().allHeadersReceived()
        if wants_continue:
            self._send100Continue()

    def _header_timed_out(self) -> None:
        self._header_timer = None
        self._reject(RequestTimeout())

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            if self._header_timer.active():
                self._header_timer.cancel()
            self._header_timer = None

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's own answer to malformed requests (bad Content-Length,
        # Content-Length with Transfer-Encoding, bad chunking...) is a bare 400;
        # the contract wants the JSON body.
        self._reject(BadRequest())

    def _reject(self, error: GatewayError) -> None:
        """Answer a request the channel cannot parse, then close."""
        self._refused = True
        self._cancel_header_timer()
        if self.transport is None or self.transport.disconnecting:
            return
        body = error_body(error.code, error.message, new_request_id())
        extra = b"".join(
            b"%s: %s\r\n" % (name, value)
            for name, value in _own_headers(getattr(self, "site", None), ISSLTransport.providedBy(self.transport))
        )
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n" % (
            error.status,
            reason_phrase(error.status),
            len(body),
            extra,
        )
        self.transport.write(head + body)
        self.persistent = False
        self.loseConnection()

    # streaming-body edge cases

    _continue_sent = False

    def _send100Continue(self) -> None:
        # Once per request, and never after a response already went out (an early 413).
        if not self._continue_sent and self.requests and not self.requests[-1].startedWriting:
            self._continue_sent = True
            super()._send100Continue()

    def allContentReceived(self) -> None:
        # A request answered before its body was complete has already left
        # the queue and the connection is closing: the rest is discarded.
        # So is a request the channel refused (its head was never handed on).
        if not self.requests or self._refused:
            return
        super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def connectionLost(self, reason: Failure) -> None:
        self._cancel_header_timer()
        super().connectionLost(reason)


class GatewayRequest(RFC9110Phrases, server.Request):
    """A request whose body streams upstream as it arrives."""

    defaultContentType = None  # never invent a Content-Type for upstream responses
    _parsePOSTFormSubmission = False
    body: Optional[StreamingBody] = None
    streaming = False
    body_complete = True
    received_bytes = 0  # request body bytes read from the client
    max_body: Optional[int] = None  # the route's limit once known (Downstream.max_body)

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kwargs)

    def gotLength(self, length: Optional[int]) -> None:
        channel = self.channel
        if length == 0 or not isinstance(channel, GatewayChannel):
            return super().gotLength(length)
        # A body follows on HTTP/1.1: route, authorise and connect now.
        self.method = channel._command
        self.uri = channel._path
        self.clientproto = channel._version
        self.path = self.uri.split(b"?", 1)[0]
        self.args = {}
        self.streaming = True
        self.body_complete = False
        if length is not None and length > self.body_limit():
            self.site = channel.site
            send_error(self, PayloadTooLarge())
            return
        self.body = StreamingBody(length, channel.transport)
        self._body_timer = channel.callLater(self.site_limits().body_timeout, self._body_stalled)
        self.process()

    def handleContentChunk(self, data: bytes) -> None:
        if not self.streaming:
            # Buffered (HTTP/2 streams): still never more than the limit.
            if self.content is None:
                return
            self.received_bytes += len(data)
            if self.received_bytes > self.body_limit():
                self.content.close()
                self.content = None
                stream = self.channel  # finish() forgets it
                send_error(self, PayloadTooLarge())
                _reset_h2_stream_when_answered(stream)
                return
            self.content.write(data)
            return
        self.received_bytes += len(data)
        body = self.body
        if body is None:
            return  # answered already; the rest is discarded
        if body.received + len(data) > self.body_limit():
            self.refuse_too_large()
            return
        if self._body_timer is not None and self._body_timer.active():
            self._body_timer.reset(self.site_limits().body_timeout)
        body.write(data)

    def body_room(self) -> int:
        """How many more body bytes the limit allows."""
        return self.body_limit() - self.received_bytes

    def refuse_too_large(self) -> None:
        """413 (if nothing was answered yet), then abort the body on its way upstream."""
        # 413 first: aborting the body fails the upstream request, whose
        # 502 must not answer before it.
        if not self.startedWriting and not self.finished:
            send_error(self, PayloadTooLarge())
        body, self.body = self.body, None
        if body is not None:
            body.abort(BodyAborted("request body too large"))

    _body_timer: Any = None

    def _body_stalled(self) -> None:
        """``client_body_timeout``: 408 (as refuse_too_large answers 413), unless the gateway is what holds the client back."""
        body = self.body
        if body is None or self.body_complete:
            return
        if body.client_paused:
            self._body_timer = self.channel.callLater(self.site_limits().body_timeout, self._body_stalled)
            return
        if not self.startedWriting and not self.finished:
            send_error(self, RequestTimeout())
        channel = getattr(self, "channel", None)  # finish() may have let it go
        if channel is not None:
            channel.persistent = False
        body, self.body = self.body, None
        if body is not None:
            body.abort(BodyAborted("request body stalled"))

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None and self._body_timer.active():
            self._body_timer.cancel()
        self._body_timer = None

    def connectionLost(self, reason: Failure) -> None:
        self._stop_body_timer()
        super().connectionLost(reason)

    def body_limit(self) -> int:
        """The route's ``max_request_body`` once routed; before, the most any route allows."""
        if self.max_body is not None:
            return self.max_body
        site = getattr(self.channel, "site", None)
        cap = getattr(site, "body_cap", None)
        return cap() if cap is not None else self.site_limits().max_request_body

    def site_limits(self) -> LimitsConfig:
        channel = self.channel
        limits = getattr(channel, "limits", None)
        return limits if limits is not None else channel.site.limits

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.streaming:
            self.body_complete = True
            self._stop_body_timer()
            if self.body is not None:
                self.body.finish()
            return
        if self.content is None:
            return  # refused as too large
        super().requestReceived(command, path, version)

    def process(self) -> None:
        self.site = site = self.channel.site
        try:
            site.handle(self)
        except Exception:
            self.processingFailed(Failure())

    def processingFailed(self, reason: Failure) -> None:
        _log.failure("unhandled error handling {uri}", reason, uri=self.uri)
        send_error(self, GatewayError())

    def finish(self) -> None:
        self._stop_body_timer()
        if not self.body_complete and self.channel is not None:
            # Answered before the client finished sending: the unread rest of
            # the body must not be parsed as a next request.
            self.channel.persistent = False
            if self.body is not None:
                body, self.body = self.body, None
                body.abort(BodyAborted("answered before the body was complete"))
        super().finish()


class _BoundedChunkedDecoder(_ChunkedTransferDecoder):
    """
    twisted.web's chunked decoder with the HTTP/1.1 engine's bounds: a size
    line ends with CRLF (a bare LF is malformed at once), the size has at
    most 16 hex digits (more would overflow 64 bits: malformed at once, not
    a chunk of 2**64 bytes waited for), and a chunk larger than what the
    body limit leaves is refused with 413 as soon as its size line arrives.
    """

    def __init__(self, request: "GatewayRequest", finished: Any) -> None:
        super().__init__(request.handleContentChunk, finished)
        self._request = request

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        line = buffer if end == -1 else buffer[:end]
        if b"\n" in line:
            raise _MalformedChunkedDataError("Chunk size lines must end with CRLF.")
        if len(line.split(b";", 1)[0]) > 16:
            raise _MalformedChunkedDataError("Chunk size overflows.")
        if not super()._dataReceived_CHUNK_LENGTH():
            return False
        if self.state == "BODY" and self.length > self._request.body_room():
            self._request.refuse_too_large()
            self.state = "REFUSED"
            return False
        return True

    def _dataReceived_REFUSED(self) -> bool:
        del self._buffer[:]  # answered 413 and closing: the rest is not read
        return False


def _reset_h2_stream_when_answered(stream: Any) -> None:
    """
    HTTP/2, answered before the body was complete: Twisted forgets a stream
    once its response is sent, and a DATA frame the client sends after that
    breaks the whole connection (KeyError in H2Connection).  Resetting the
    stream with NO_ERROR right after the response (RFC 9113, 8.1) tells the
    client to stop, and h2 then discards late frames itself.
    """
    conn = getattr(stream, "_conn", None)
    sent = getattr(conn, "_streamCleanupCallbacks", {}).get(getattr(stream, "streamID", None))
    if sent is None:
        return

    def reset(stream_id: int) -> int:
        try:
            conn.conn.reset_stream(stream_id)  # type: ignore[union-attr]
        except H2ProtocolError:
            return stream_id  # the client had finished sending after all
        conn._tryToWriteControlData()  # type: ignore[union-attr]
        return stream_id

    sent.addCallback(reset)


class _CountedChannelProtocol(_GenericHTTPChannelProtocol):
    """twisted.web's HTTP/1.1-or-HTTP/2 protocol, reporting its connection's start and end."""

    def __init__(self, channel: HTTPChannel, on_connection: Any) -> None:
        super().__init__(channel)
        self._on_connection = on_connection

    def makeConnection(self, transport: Any) -> None:
        self._on_connection(1)
        super().makeConnection(transport)

    def connectionLost(self, reason: Failure) -> None:
        self._on_connection(-1)
        super().connectionLost(reason)


def channel_protocol(channel: HTTPChannel, on_connection: Any = None) -> _GenericHTTPChannelProtocol:
    """
    The protocol twisted.web wraps an HTTP/1.1 channel in (it switches to
    HTTP/2 on ALPN h2); `on_connection(+1 / -1)` counts connections.
    """
    if on_connection is None:
        return _GenericHTTPChannelProtocol(channel)
    return _CountedChannelProtocol(channel, on_connection)


def h2_tls_transport(request: Any) -> Any:
    """The TLS transport behind an HTTP/2 stream (its `transport` is None)."""
    return getattr(getattr(getattr(request, "channel", None), "_conn", None), "transport", None)
