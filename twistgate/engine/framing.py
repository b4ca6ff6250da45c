"""
HTTP/1.1 framing rules the engine adds to llhttp's, and the response head.

llhttp (through httptools, leniencies off) already refuses: Content-Length
with Transfer-Encoding, duplicate or non-numeric Content-Length, a request
Transfer-Encoding whose final coding is not chunked, obs-fold, bare CR or LF,
NUL/CTL in field values, whitespace before a colon, unknown methods and
versions above 1.1 other than 2.0.  This module adds what it lets through
(see `check_request_line`, `body_framing`) and turns a decision into bytes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.errors import BadRequest, GatewayError, error_body
from twistgate.headers import canonical_name
from twistgate.http import new_request_id
from twistgate.reasons import reason_for

__all__ = [
    "FieldCollector",
    "NotImplementedCoding",
    "VersionNotSupported",
    "NAMES",
    "OWS",
    "body_framing",
    "canonical",
    "check_request_line",
    "connection_tokens",
    "error_response",
    "head_bytes",
    "persists",
    "response_length",
    "status_line",
]

CONTENT_LENGTH = b"Content-Length"
TRANSFER_ENCODING = b"Transfer-Encoding"
CONNECTION = b"Connection"


class NotImplementedCoding(GatewayError):
    """RFC 9112 §6.1: a transfer coding other than chunked is not implemented."""

    status, code, default_message = 501, "not_implemented", "The transfer coding is not implemented."


class VersionNotSupported(GatewayError):
    status, code, default_message = 505, "http_version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are served."


OWS = (b" ", b"\t")
_OWS_BYTES = (32, 9)  # SP, HTAB


NAMES: Dict[bytes, bytes] = {}  # wire name -> canonical name (read it inline on hot paths)


def canonical(name: bytes) -> bytes:
    """`canonical_name` for names straight off the wire, with a bounded cache of its own."""
    key = NAMES.get(name)
    if key is None:
        key = canonical_name(name)
        if len(NAMES) < 4096:
            NAMES[name] = key
    return key


class FieldCollector:
    """
    The httptools ``on_header`` callback of both the server's head parser
    and the upstream client: fields into ``_raw`` (names canonical, the
    trailing whitespace llhttp keeps trimmed).  One method for both, and an
    inherited one: httptools binds it once, so sharing it costs no call.
    """

    _raw: Dict[bytes, List[bytes]]

    def on_header(self, name: bytes, value: bytes) -> None:
        try:
            key = NAMES[name]  # a subscript beats .get() and `or`: ~0.05 us a field, on every field
        except KeyError:
            key = canonical(name)
        if value and value[-1] in _OWS_BYTES:  # (a byte compared costs a fifth of `endswith`'s call)
            value = value.rstrip(b" \t")
        raw = self._raw
        if key in raw:
            raw[key].append(value)
        else:
            raw[key] = [value]


_KEEP_ALIVE_11 = {b"keep-alive": True, b"Keep-Alive": True, b"close": False, b"Close": False}
_KEEP_ALIVE_10 = {b"keep-alive": True, b"Keep-Alive": True, b"close": False, b"Close": False}


def persists(connection: Optional[List[bytes]], http11: bool) -> bool:
    """Whether a message's connection may persist (RFC 9112 §9.3), from its `Connection` fields."""
    if connection is None:
        return http11
    if len(connection) == 1:
        known = _KEEP_ALIVE_11.get(connection[0]) if http11 else _KEEP_ALIVE_10.get(connection[0])
        if known is not None:
            return known
    tokens = connection_tokens(connection)
    return b"close" not in tokens if http11 else (b"keep-alive" in tokens and b"close" not in tokens)


def check_request_line(line: bytes) -> None:
    """
    What llhttp accepts in a request line but the engine does not: more than
    one space between parts, and a fragment in the target (RFC 9112 §3).
    """
    if line.count(b" ") != 2:
        raise BadRequest("Malformed request line.")
    if b"#" in line:
        raise BadRequest("A request target cannot carry a fragment.")


def connection_tokens(values: Optional[List[bytes]]) -> List[bytes]:
    """The lower-cased tokens of `Connection` fields (RFC 9110 §7.6.1: case-insensitive)."""
    if not values:
        return []
    return [token.strip().lower() for value in values for token in value.split(b",") if token.strip()]


def body_framing(raw: Dict[bytes, List[bytes]], http11: bool) -> Tuple[bool, int]:
    """
    How a request body is framed: ``(chunked, length)``.  ``length`` is the
    Content-Length (0 when there is no body).  llhttp has already refused
    CL with TE, duplicate or malformed CL, and a final coding other than
    chunked; what is left to refuse here is any other coding before chunked
    (501: the gateway would have to decode it) and Transfer-Encoding on
    HTTP/1.0 (400, RFC 9112 §6.1: its framing cannot be trusted).
    """
    codings = raw.get(TRANSFER_ENCODING)
    if codings is not None:
        if not http11:
            raise BadRequest("Transfer-Encoding is not allowed on HTTP/1.0.")
        if connection_tokens(codings) != [b"chunked"]:
            raise NotImplementedCoding()
        return True, 0
    lengths = raw.get(CONTENT_LENGTH)
    if lengths is None:
        return False, 0
    return False, int(lengths[0])


def response_length(raw: Dict[bytes, List[bytes]], code: int, method: bytes) -> Tuple[Any, bool]:
    """
    A response body's ``(length, until_close)`` (RFC 9112 §6.3): none for HEAD,
    204, 304 and 101; chunked or any other final coding is `UNKNOWN_LENGTH`,
    and without chunked as the final coding (or without any length) the body
    runs until the upstream closes.  llhttp has refused CL with TE already.
    """
    if method == b"HEAD" or code == 204 or code == 304 or code == 101:
        return 0, False
    codings = raw.get(TRANSFER_ENCODING)
    if codings is not None:
        return UNKNOWN_LENGTH, connection_tokens(codings)[-1:] != [b"chunked"]
    lengths = raw.get(CONTENT_LENGTH)
    if lengths is not None:
        return int(lengths[0]), False
    return UNKNOWN_LENGTH, True


_status_lines: Dict[Tuple[bytes, int, bytes], bytes] = {}


def status_line(version: bytes, status: int, reason: Optional[bytes]) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``, cached (reasons come from a small set)."""
    key = (version, status, reason or b"")
    line = _status_lines.get(key)
    if line is None:
        if not reason:
            reason = reason_for(status)
        elif b"\r" in reason or b"\n" in reason:
            reason = b" ".join(reason.splitlines())
        line = b"%s %d %s\r\n" % (version, status, reason)
        if len(_status_lines) < 4096:
            _status_lines[key] = line
    return line


def head_bytes(line: bytes, raw: Dict[bytes, List[bytes]], extra: bytes) -> bytes:
    """The status line, every field of ``raw``, ``extra`` (ready-made lines) and the blank line."""
    parts = [line]
    for name, values in raw.items():
        if len(values) == 1:
            parts += (name, b": ", values[0], b"\r\n")  # one tuple extend beats four appends
        else:
            for value in values:
                parts += (name, b": ", value, b"\r\n")
    parts.append(extra)
    parts.append(b"\r\n")
    return b"".join(parts)


#: What the engine's own answers set themselves.
_ERROR_OWNED = frozenset({b"content-type", b"content-length", b"x-request-id", b"cache-control", b"connection"})


def error_response(error: GatewayError, own: Any = ()) -> bytes:
    """
    The engine's own answer to ``error``: the gateway's JSON body, then the
    connection closes.  `own`: more ``(name, value)`` pairs for the gateway's
    own answers (what ``defaults`` gives them), unless the error set them.
    """
    request_id = new_request_id()
    body = error_body(error.code, error.message, request_id)
    pairs = list(error.headers)
    taken = {name.lower() for name, _ in pairs} | _ERROR_OWNED
    pairs += [(name, value) for name, value in own if name.lower() not in taken]
    extra = b"".join(b"%s: %s\r\n" % pair for pair in pairs)
    return b"%sContent-Type: application/json\r\nContent-Length: %d\r\nX-Request-Id: %s\r\n" \
        b"Cache-Control: no-store\r\nConnection: close\r\n%s\r\n%s" % (
            status_line(b"HTTP/1.1", error.status, None),
            len(body),
            request_id.encode("ascii"),
            extra,
            body,
        )
