"""
Parsing one request head: llhttp (through httptools, every leniency off)
plus the engine's own rules (`framing`) and limits.

The server finds the head's end itself and feeds exactly the head here, so
llhttp never sees a body and never decides where a message ends: the engine
does, and only once the head passed every check.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from twistgate.engine.parsers import HttpParserError, HttpParserUpgrade, HttpRequestParser

from twistgate.engine.framing import (
    CONNECTION,
    CONTENT_LENGTH,
    TRANSFER_ENCODING,
    FieldCollector,
    VersionNotSupported,
    body_framing,
    check_request_line,
    persists,
)
from twistgate.engine.limits import ServerLimits
from twistgate.errors import BadRequest, HeadersTooLarge, PayloadTooLarge, URITooLong
from twistgate.fieldnames import FieldNames
from twistgate.headers import Headers

__all__ = ["ParsedHead", "RequestHeadParser"]

Raw = Dict[bytes, List[bytes]]


#: What `RequestHeadParser.parse` returns: ``(method, target, version, headers,
#: keep_alive, expects_continue, chunked, length)``, a plain tuple (an object
#: with an ``__init__`` costs a call per request).  ``version`` is
#: ``b"HTTP/1.1"`` or ``b"HTTP/1.0"``; ``length`` is the Content-Length (0 if none).
ParsedHead = Tuple[bytes, bytes, bytes, Headers, bool, bool, bool, int]

#: Fields that change how a request is framed or kept: a head without any of them is the common case.
_FRAMING_FIELDS = FieldNames({CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, b"Expect"})


class RequestHeadParser(FieldCollector):
    """Parses complete request heads (one per call), reusing one llhttp parser when it can."""

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = limits
        self._parser: Optional[HttpRequestParser] = None
        self._raw: Raw = {}
        self._head_done = False
        self._line_seen = False  # a partial head's request line ended within the limit

    def check_partial(self, buf: bytes, start: int) -> None:
        """
        Refuse an incomplete head as soon as it cannot become a valid one.
        ``buf[:start]`` passed these checks before: only the rest is looked at.
        """
        limits = self._limits
        if len(buf) > limits.max_header_bytes:
            raise HeadersTooLarge()
        if not self._line_seen:
            line_end = buf.find(b"\r\n", max(start - 1, 0))
            if line_end < 0:
                if len(buf) > limits.max_request_line:
                    raise URITooLong()
            elif line_end > limits.max_request_line:
                raise URITooLong()
            else:
                self._line_seen = True
        newline = buf.find(b"\n", start)
        while newline >= 0:
            if newline == 0 or buf[newline - 1] != 13:
                raise BadRequest("Lines must end with CRLF.")
            newline = buf.find(b"\n", newline + 1)

    def parse(self, head: bytes, max_body: Optional[int] = None) -> ParsedHead:
        """
        ``head`` runs up to and including its CRLFCRLF; raises a `GatewayError`
        to answer with.  `max_body`: the largest body allowed now (default the
        listener's ``max_request_body``).
        """
        limits = self._limits
        self._line_seen = False
        line_end = head.find(b"\r\n")
        if line_end > limits.max_request_line:
            raise URITooLong()
        if len(head) > limits.max_header_bytes:
            raise HeadersTooLarge()
        line = head[:line_end]
        check_request_line(line)
        parser = self._parser
        if parser is None:
            parser = self._parser = HttpRequestParser(self)
        self._raw = raw = {}
        self._head_done = False
        try:
            parser.feed_data(head)
        except HttpParserUpgrade:
            self._parser = None  # the engine frames what follows, and the next head starts afresh
        except HttpParserError as error:
            self._parser = None
            raise BadRequest(f"Malformed request: {error}.") from None
        if not self._head_done:
            self._parser = None
            raise BadRequest("Malformed request head.")
        # llhttp accepted the head: one CRLF per field line, after the request line and before the blank line.
        if head.count(b"\r\n") - 2 > limits.max_headers:
            raise HeadersTooLarge("Too many request header fields.")
        # llhttp accepted the request line and it has exactly two spaces: its parts are what llhttp parsed.
        method, target, version = line.split(b" ")
        if version == b"HTTP/1.1":
            http11 = True
        elif version == b"HTTP/1.0":
            http11 = False
        else:
            raise VersionNotSupported()
        hosts = raw.get(b"Host")
        if (hosts is None and http11) or (hosts is not None and len(hosts) != 1):
            raise BadRequest("Exactly one Host header is required.")
        headers = Headers.__new__(Headers)  # around the engine's own dict (names canonical, values clean): no copy, no checks
        headers.raw = raw
        if _FRAMING_FIELDS.isdisjoint(raw):
            return method, target, version, headers, http11, False, False, 0  # no body; persists as its version says
        chunked, length = body_framing(raw, http11)
        if chunked or length:
            self._parser = None  # llhttp waits for a body the engine reads itself: start afresh
        if length > (limits.max_request_body if max_body is None else max_body):
            raise PayloadTooLarge()
        keep_alive = persists(raw.get(CONNECTION), http11)
        expect = raw.get(b"Expect")
        expects_continue = http11 and expect is not None and expect[0].lower() == b"100-continue"
        return method, target, version, headers, keep_alive, expects_continue, chunked, length

    # httptools callbacks (only a head is ever fed; on_header is FieldCollector's)

    def on_headers_complete(self) -> None:
        self._head_done = True
