"""
The twisted.web engine's HTTP/1.1 channel (``engine: twisted``) with the
gateway's limits and framing rules, and the protocol it is wrapped in.

This leans on private parts of `twisted.web.http` (the channel's
`_command`, `_path`, `_version`, `__first_line`, `_receivedHeaderSize`,
the chunked decoder's states), which is why it lives in
`twistgate._twisted_compat` (checked at startup by `check()`).  The
request it parses is `twistgate._twisted_compat.web_server.GatewayRequest`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure
from twisted.web.http import (
    HTTPChannel,
    _ChunkedTransferDecoder,
    _GenericHTTPChannelProtocol,
    _MalformedChunkedDataError,
)

from twistgate._twisted_compat.web_errors import own_headers
from twistgate.config.model import LimitsConfig
from twistgate.errors import BadRequest, GatewayError, HeadersTooLarge, RequestTimeout, URITooLong, error_body
from twistgate.http import new_request_id, reason_phrase

if TYPE_CHECKING:
    from twistgate._twisted_compat.web_server import GatewayRequest

__all__ = ["GatewayChannel", "channel_protocol"]


class GatewayChannel(HTTPChannel):
    """
    HTTP/1.1 with the gateway's limits: request line (414), header bytes and
    count (431), time to read a request head (408), and JSON bodies for every
    error the channel itself answers.  The framing rules the HTTP/1.1 engine
    on httptools enforces hold here too: exactly one Host on HTTP/1.1 (at
    most one on 1.0) or 400 and close; bare LF line ends refused as soon as
    they arrive (twisted.web's line parser would wait for a CRLF until the
    header timeout); folded header lines (obs-fold) refused, not joined;
    chunk sizes of 1 to 16 hex digits, and a chunk declared
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
        elif line[:1] in (b" ", b"\t"):
            # obs-fold (RFC 9112 5.2): twisted.web would join it to the field
            # before; the httptools engine refuses it, and so do we.
            return self._reject(BadRequest("Folded header lines (obs-fold) are not allowed."))
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
            for name, value in own_headers(getattr(self, "site", None), ISSLTransport.providedBy(self.transport))
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
