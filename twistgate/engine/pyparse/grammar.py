"""
The HTTP/1.1 grammar `pyparse` checks, as llhttp (through httptools, every
leniency off) has it: precompiled patterns over whole lines, so PyPy's JIT
runs a few regex and bytes calls per head instead of a loop per byte.

Where llhttp is laxer or stricter than RFC 9112 this follows llhttp (the
differential test in tests/engine/test_pyparse_differential.py holds both to
the same answers): e.g. ``GET /  HTTP/1.1`` (two spaces) and RTSP/ICE
versions are accepted, a reason phrase may hold any byte but CR and LF.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, Optional, Tuple

__all__ = [
    "HttpParserCallbackError",
    "HttpParserError",
    "HttpParserInvalidMethodError",
    "HttpParserInvalidStatusError",
    "HttpParserInvalidURLError",
    "HttpParserUpgrade",
]


class HttpParserError(Exception):
    """A message llhttp would refuse (httptools' class of the same name)."""


class HttpParserCallbackError(HttpParserError):
    """A callback raised; the original exception is the ``__context__``."""


class HttpParserInvalidStatusError(HttpParserError):
    pass


class HttpParserInvalidMethodError(HttpParserError):
    pass


class HttpParserInvalidURLError(HttpParserError):
    pass


class HttpParserUpgrade(Exception):
    """Not an `HttpParserError`, as in httptools: ``args[0]`` is where the other protocol starts in the data fed."""


TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
VALUE_CHAR = rb"\t\x20-\x7e\x80-\xff"
#: Every field line of a head (each with its CRLF): llhttp's token, then a value of VCHAR, SP, HTAB, obs-text.
FIELDS = re.compile(rb"(?:[%s]+:[%s]*\r\n)*" % (TCHAR, VALUE_CHAR))
#: The start of a field line (or of the blank line ending the head).
FIELD_PREFIX = re.compile(rb"[%s]*|[%s]+:[%s]*\r?|\r" % (TCHAR, TCHAR, VALUE_CHAR))
_FIELD = re.compile(rb"[%s]+:[%s]*" % (TCHAR, VALUE_CHAR))
#: A field name (llhttp's token).
TOKEN = re.compile(rb"[%s]+" % TCHAR)
#: A byte no field line holds, but for its CRLF: one search over a block of lines finds a bad value.
NOT_IN_FIELDS = re.compile(rb"[^%s\r\n]" % VALUE_CHAR)
_CONTENT_LENGTH = re.compile(rb"([0-9]+)[ \t]*")
_MAX_UINT64 = 0xFFFFFFFFFFFFFFFF

_QUOTED_CHAR = rb'(?:[\t !#-\[\]-~\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])'
_EXTENSION = rb'(?:;[%s]+(?:=(?:[%s]+|"%s*")?)?)' % (TCHAR, TCHAR, _QUOTED_CHAR)
#: A chunk's size line without its CRLF: hex size, then ``;name`` or ``;name=value`` extensions (an empty value passes, as in llhttp).
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)%s*" % _EXTENSION)
#: The start of a chunk size line: an incomplete line that is not one is refused at once, as llhttp does
#: (its CR only after a whole extension: llhttp refuses ``3;`` or ``3;a="x`` at the CR).
CHUNK_LINE_START = re.compile(rb'[0-9A-Fa-f]*|[0-9A-Fa-f]+%s*(?:;|;[%s]+="%s*\\?|\r)?' % (_EXTENSION, TCHAR, _QUOTED_CHAR))

_HTTP_METHODS = (
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH UNLOCK BIND "
    b"REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE "
    b"MKCALENDAR LINK UNLINK SOURCE PRI QUERY"
).split()
_RTSP_ONLY = b"DESCRIBE ANNOUNCE SETUP PLAY PAUSE TEARDOWN GET_PARAMETER SET_PARAMETER REDIRECT RECORD FLUSH".split()
HTTP_METHODS: FrozenSet[bytes] = frozenset(_HTTP_METHODS)
RTSP_METHODS: FrozenSet[bytes] = frozenset(_RTSP_ONLY + [b"GET", b"POST", b"OPTIONS"])
METHODS: FrozenSet[bytes] = frozenset(_HTTP_METHODS + _RTSP_ONLY)
VERSIONS = frozenset({(0, 9), (1, 0), (1, 1), (2, 0)})

_SERVER = rb"(?:[!$%&'()*+,\-.0-9:;=A-Z\[\]_a-z~]|@(?!@))*"
_REST = rb"(?:[/?][\x21-\x7e]*)?"
_URL = re.compile(rb"[/*][\x21-\x7e]*|[A-Za-z]+://" + _SERVER + _REST)
_CONNECT_URL = re.compile(_SERVER + _REST)
_PROTOCOL = re.compile(rb"(HTTP|RTSP|ICE)/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"(?:HTTP|RTSP|ICE)/([0-9])\.([0-9]) ([0-9]{3})(?:( )([^\r\n]*))?")

RequestLine = Tuple[bytes, bytes, int, int, bool]


def _target_after(line: bytes, space: int) -> Tuple[int, bytes]:
    """``(where the target ends or -1, the target)`` after the method's space (llhttp skips repeated spaces)."""
    start = space + 1
    while line[start : start + 1] == b" ":
        start += 1
    end = line.find(b" ", start)
    return end, (line[start:] if end < 0 else line[start:end])


def request_line(line: bytes) -> RequestLine:
    """
    ``(method, target, major, minor, versioned)`` of a request line (without
    its CRLF), or the error llhttp gives.  Without a version it is HTTP/0.9.
    """
    space = line.find(b" ")
    method = line[:space] if space > 0 else line
    if space < 0 or method not in METHODS:
        raise HttpParserInvalidMethodError("Invalid method encountered")
    end, target = _target_after(line, space)
    pattern = _CONNECT_URL if method == b"CONNECT" else _URL
    if (not target and method != b"CONNECT") or pattern.fullmatch(target) is None:
        raise HttpParserInvalidURLError("Invalid characters in url")
    if b"\r" in line or b"\n" in line:
        raise HttpParserError("Expected CRLF after version")
    if end < 0:
        return method, target, 0, 9, False
    while line[end : end + 1] == b" ":
        end += 1
    if len(line) == end + 8 and line.startswith(b"HTTP/1.1", end):  # the usual version, without the pattern
        _check_protocol(method, b"HTTP")
        return method, target, 1, 1, True
    protocol = _PROTOCOL.match(line, end)
    if protocol is None:
        if line.startswith((b"HTTP/", b"RTSP/", b"ICE/"), end):
            raise HttpParserError("Expected dot")
        raise HttpParserError("Expected HTTP/, RTSP/ or ICE/")
    if protocol.end() != len(line):
        raise HttpParserError("Expected CRLF after version")
    _check_protocol(method, protocol.group(1))
    version = _version(protocol.group(2), protocol.group(3))
    return method, target, version[0], version[1], True


def _check_protocol(method: bytes, name: bytes) -> None:
    """Refuse a method the protocol (``HTTP``, ``RTSP`` or ``ICE``) lacks: llhttp does at its name's last letter."""
    if name == b"HTTP":
        if method not in HTTP_METHODS:
            raise HttpParserError("Invalid method for HTTP/x.x request")
    elif name == b"RTSP":
        if method not in RTSP_METHODS:
            raise HttpParserError("Invalid method for RTSP/x.x request")
    elif method != b"SOURCE":
        raise HttpParserError("Expected SOURCE method for ICE/x.x request")


def _version(major: bytes, minor: bytes) -> Tuple[int, int]:
    """The version from its two digits, refused as llhttp does at the minor digit."""
    version = int(major), int(minor)
    if version not in VERSIONS:
        raise HttpParserError("Invalid HTTP version")
    return version


_URL_PREFIX = re.compile(rb"[/*][\x21-\x7e]*|[A-Za-z]+(?::(?:/(?:/" + _SERVER + _REST + rb")?)?)?")
_VERSION_PREFIX = re.compile(rb"([0-9])(?:\.([0-9])?)?")


def check_request_prefix(line: bytes) -> None:
    """
    Refuse an incomplete request line at once when it cannot become a valid
    one: llhttp reads byte by byte, judging the target whole at the space or
    CR after it, the method against the protocol at the protocol's name, the
    version at its minor digit, the whole line at its CR.
    """
    space = line.find(b" ")
    if space < 0:
        if not any(method.startswith(line) for method in METHODS):
            raise HttpParserInvalidMethodError("Invalid method encountered")
        return
    method = line[:space]
    if method not in METHODS:
        raise HttpParserInvalidMethodError("Invalid method encountered")
    if line.endswith(b"\r"):
        request_line(line[:-1])
        return
    end, target = _target_after(line, space)
    if end < 0:
        pattern = _CONNECT_URL if method == b"CONNECT" else _URL_PREFIX
        if target and pattern.fullmatch(target) is None:
            raise HttpParserInvalidURLError("Invalid characters in url")
        return
    request_line(line[:end])  # the method and the whole target
    version = line[end:].lstrip(b" ")
    for name in (b"HTTP/", b"RTSP/", b"ICE/"):
        if name.startswith(version[: len(name)]):
            if len(version) >= len(name) - 1:
                _check_protocol(method, name[:-1])
            if len(version) <= len(name):
                return
            digits = _VERSION_PREFIX.fullmatch(version, len(name))
            if digits is not None:
                if digits.group(2) is not None:
                    _version(digits.group(1), digits.group(2))
                return
    raise HttpParserError("Expected HTTP/, RTSP/ or ICE/")


StatusLine = Tuple[int, int, int, Optional[bytes]]

#: Status lines seen valid -> what they say: an upstream sends a few (``HTTP/1.1 200 OK``) over and over, and
#: on PyPy a pattern's match enters the regex engine's loops several times.  Bounded, as `framing.NAMES`.
_STATUS_LINES: Dict[bytes, StatusLine] = {}


def status_line(line: bytes) -> StatusLine:
    """``(major, minor, status, reason)`` of a status line (``reason`` None when there is no space after the code)."""
    known = _STATUS_LINES.get(line)
    if known is not None:
        return known
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        if not line.startswith((b"HTTP/", b"RTSP/", b"ICE/")):
            raise HttpParserError("Expected HTTP/, RTSP/ or ICE/")
        if b"\n" in line:
            raise HttpParserError("Missing expected CR after response line")
        raise HttpParserInvalidStatusError("Invalid status code")
    version = int(match.group(1)), int(match.group(2))
    if version not in VERSIONS:
        raise HttpParserError("Invalid HTTP version")
    parsed = version[0], version[1], int(match.group(3)), match.group(5) if match.group(4) else None
    if len(_STATUS_LINES) < 256:
        _STATUS_LINES[line] = parsed
    return parsed


_STATUS_PREFIX = re.compile(
    rb"(?:HTTP|RTSP|ICE)/(?:([0-9])(?:\.(?:([0-9])(?: (?:[0-9]{0,2}|[0-9]{3}(?: [^\r\n]*)?\r?)?)?)?)?)?"
    rb"|H(?:T(?:TP?)?)?|R(?:T(?:SP?)?)?|I(?:CE?)?"
)


def check_status_prefix(partial: bytes) -> None:
    """Refuse an incomplete status line at once when it cannot become a valid one (llhttp reads byte by byte)."""
    match = _STATUS_PREFIX.fullmatch(partial)
    if match is None:
        status_line(partial + b"\x00")  # raises what llhttp raises there
    elif match.group(2) is not None and (int(match.group(1)), int(match.group(2))) not in VERSIONS:
        raise HttpParserError("Invalid HTTP version")


def check_fields(data: bytes, start: int, stop: int) -> None:
    """Refuse the field lines in ``data[start:stop]`` (each with its CRLF) unless all are valid, with llhttp's error."""
    if FIELDS.fullmatch(data, start, stop) is None:
        raise field_error(data[start : stop - 2])


def field_error(lines: bytes) -> HttpParserError:
    """The error for the first bad field line in ``lines`` (which `FIELDS` refused)."""
    for line in lines.split(b"\r\n"):
        if _FIELD.fullmatch(line) is not None:
            continue
        if line[:1] in (b" ", b"\t"):
            return HttpParserError("Unexpected whitespace after header value")
        colon = line.find(b":")
        if colon <= 0 or re.fullmatch(rb"[%s]+" % TCHAR, line[:colon]) is None:
            return HttpParserError("Invalid header token")
        if b"\r" in line:
            return HttpParserError("Missing expected LF after header value")
        if b"\n" in line:
            return HttpParserError("Missing expected CR after header value")
        return HttpParserError("Invalid header value char")
    return HttpParserError("Invalid header value char")


def content_length(value: bytes) -> int:
    """A Content-Length value (leading whitespace already gone), refused as llhttp refuses it."""
    if value.isdigit() and len(value) < 20:  # the usual value, without a pattern (isdigit: ASCII digits only)
        return int(value)
    match = _CONTENT_LENGTH.fullmatch(value)
    if match is None:
        if not value.strip(b" \t"):
            raise HttpParserError("Empty Content-Length")
        raise HttpParserError("Invalid character in Content-Length")
    length = int(match.group(1))
    if length > _MAX_UINT64:
        raise HttpParserError("Content-Length overflow")
    return length


def chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line (without CRLF)."""
    match = CHUNK_LINE.fullmatch(line)
    if match is None:
        if re.match(rb"[0-9A-Fa-f]+(?:;|\Z)", line) is None:
            raise HttpParserError("Invalid character in chunk size")
        raise HttpParserError("Invalid character in chunk extensions")
    size = int(match.group(1), 16)
    if size > _MAX_UINT64:
        raise HttpParserError("Chunk size overflow")
    return size


_HEX = re.compile(rb"[0-9A-Fa-f]*")


def check_chunk_start(partial: bytes) -> None:
    """Refuse an incomplete chunk size line at once when it cannot become a valid one (as llhttp, byte by byte)."""
    if CHUNK_LINE_START.fullmatch(partial) is None:
        chunk_size(partial.rstrip(b"\r") + b"\x00")  # raises what llhttp raises there
    digits = _HEX.match(partial).group()  # type: ignore[union-attr]
    if len(digits) > 16 and int(digits, 16) > _MAX_UINT64:
        raise HttpParserError("Chunk size overflow")
