"""
A pure-Python HTTP/1.1 parser with the part of httptools' interface the
engine uses, for PyPy: there httptools runs under cpyext, where every
callback and every bytes object crossing into llhttp costs more than plain
Python the JIT compiles (docs/engine.md, "The parser").

It is exactly as strict as llhttp with every leniency off (`grammar`;
tests/engine/test_pyparse_differential.py feeds both the same bytes, cut
anywhere).  The one difference a caller could see: a head that turns out
malformed reports none of its fields first (llhttp reports those before the
bad one), and a head's fields are reported once the head is complete.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twistgate.engine.pyparse.grammar import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserInvalidStatusError,
    HttpParserInvalidURLError,
    HttpParserUpgrade,
    check_request_prefix,
    check_status_prefix,
    request_line,
    status_line,
)
from twistgate.engine.pyparse.machine import MessageParser, callback_of

__all__ = [
    "HttpParserCallbackError",
    "HttpParserError",
    "HttpParserInvalidMethodError",
    "HttpParserInvalidStatusError",
    "HttpParserInvalidURLError",
    "HttpParserUpgrade",
    "HttpRequestParser",
    "HttpResponseParser",
]

_NO_BODY = frozenset({204, 304})
_PREFACE_REST = b"\r\nSM\r\n\r\n"


class HttpRequestParser(MessageParser):
    """httptools' ``HttpRequestParser``: ``on_url`` gets the whole target at once."""

    def __init__(self, protocol: Any) -> None:
        self._on_url = callback_of(protocol, "on_url")
        super().__init__(protocol)

    def get_method(self) -> bytes:
        return self._method

    def _check_start(self, partial: bytes) -> None:
        check_request_prefix(partial)

    def _start_line(self, line: bytes, eol: int) -> None:
        method, self._target, self._major, self._minor, versioned = request_line(line)
        if versioned and eol == 1:
            raise HttpParserError("Expected CRLF after version")
        self._method = method
        self._preface = method == b"PRI" and versioned

    def _emit_head(self, headers: List[Tuple[bytes, bytes]]) -> None:
        try:
            self._on_url(self._target)
        except BaseException:
            raise HttpParserCallbackError("`on_url` callback error")
        MessageParser._emit_head(self, headers)

    def _await_preface(self, data: bytes, pos: int, start: int, end: int) -> int:
        """``PRI * HTTP/2.0``: llhttp waits for the rest of HTTP/2's preface, then refuses it as HTTP/1."""
        rest = data[start : start + len(_PREFACE_REST)]
        if len(rest) == len(_PREFACE_REST) or not _PREFACE_REST.startswith(rest):
            raise HttpParserError("Pause on PRI/Upgrade")
        self._buffer = data[pos:] if pos else data
        return end

    def _head_upgrades(self) -> bool:
        return (self._has_upgrade and self._conn_upgrade) or self._method == b"CONNECT"

    def _skips_body(self) -> bool:
        return False

    def _needs_eof(self) -> bool:
        return False


class HttpResponseParser(MessageParser):
    """httptools' ``HttpResponseParser``: ``on_status`` gets the reason phrase (if the line has one)."""

    _request = False

    def __init__(self, protocol: Any) -> None:
        self._on_status = callback_of(protocol, "on_status")
        super().__init__(protocol)

    def get_status_code(self) -> int:
        return self._status

    def _start_line(self, line: bytes, eol: int) -> None:
        self._major, self._minor, self._status, self._reason = status_line(line)

    def _check_start(self, partial: bytes) -> None:
        check_status_prefix(partial)

    def _emit_head(self, headers: List[Tuple[bytes, bytes]]) -> None:
        reason = self._reason
        if reason is not None:
            try:
                self._on_status(reason)
            except BaseException:
                raise HttpParserCallbackError("`on_status` callback error")
        MessageParser._emit_head(self, headers)

    def _after_head(self) -> None:
        if self._status == 101 and not self._upgrade:
            self._complete()
            raise HttpParserError("Pause on CONNECT/Upgrade")
        MessageParser._after_head(self)

    def _head_upgrades(self) -> bool:
        return self._has_upgrade and self._conn_upgrade and self._status == 101

    def _skips_body(self) -> bool:
        status = self._status
        return 100 <= status < 200 or status in _NO_BODY

    def _needs_eof(self) -> bool:
        status = self._status
        if 100 <= status < 200 or status in _NO_BODY:
            return False
        if self._te and not self._chunked:
            return True
        return not (self._chunked or self._length >= 0)
