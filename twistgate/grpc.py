"""
gRPC as the gateway sees it: HTTP/2 requests whose ``content-type`` is
``application/grpc`` (or ``application/grpc+proto``, ``+json``...).

Calls pass through routes like any request; this module covers what the
gateway says itself on a gRPC call:

* its errors are gRPC-shaped (`error_response`): HTTP 200, a trailers-only
  answer (one HEADERS frame with END_STREAM) carrying ``grpc-status`` and a
  percent-encoded ``grpc-message``, as gRPC clients expect (a JSON body
  would reach them as UNKNOWN or INTERNAL);
* ``grpc-timeout`` (`parse_timeout`) bounds the route's timeout, and the
  deadline passing ends the call with DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

from twistgate.errors import GatewayError
from twistgate.fields import first_int
from twistgate.headers import Headers

__all__ = ["STATUS", "code_for", "error_response", "is_grpc", "parse_timeout", "status_trailers"]

#: The canonical status codes (grpc/doc/statuscodes.md).
STATUS = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
    "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}  # fmt: skip
NAMES = {code: name for name, code in STATUS.items()}

#: The gateway's own HTTP errors as gRPC statuses.
_FOR_HTTP = {
    400: STATUS["INTERNAL"],
    401: STATUS["UNAUTHENTICATED"],
    403: STATUS["PERMISSION_DENIED"],
    404: STATUS["UNIMPLEMENTED"],  # no route: the method does not exist here
    405: STATUS["UNIMPLEMENTED"],
    408: STATUS["DEADLINE_EXCEEDED"],
    413: STATUS["RESOURCE_EXHAUSTED"],
    429: STATUS["RESOURCE_EXHAUSTED"],
    431: STATUS["RESOURCE_EXHAUSTED"],
    502: STATUS["UNAVAILABLE"],
    503: STATUS["UNAVAILABLE"],  # no healthy target, breaker open, draining
    504: STATUS["DEADLINE_EXCEEDED"],
}


def is_grpc(headers: Headers) -> bool:
    """Whether a request is a gRPC call (its content-type is application/grpc...)."""
    values = headers.raw.get(b"Content-Type")
    return bool(values) and values[0][:16].lower() == b"application/grpc"


def code_for(error: GatewayError) -> int:
    """The gRPC status of one of the gateway's errors."""
    return _FOR_HTTP.get(error.status, STATUS["UNKNOWN"] if error.status < 500 else STATUS["INTERNAL"])


_NEEDS_ESCAPE = re.compile(rb"[^\x20-\x24\x26-\x7e]")


def encode_message(message: str) -> bytes:
    """``grpc-message``: UTF-8, percent-encoded outside printable ASCII (and ``%`` itself)."""
    return _NEEDS_ESCAPE.sub(lambda m: b"%%%02X" % m.group()[0], message.encode("utf-8"))


def status_trailers(code: int, message: str) -> Headers:
    """The trailer fields that end a call with `code`."""
    headers = Headers()
    headers.raw[b"Grpc-Status"] = [b"%d" % code]
    if message:
        headers.raw[b"Grpc-Message"] = [encode_message(message)]
    return headers


def error_response(error: GatewayError, request_id: str, date: bytes, content_type: Optional[bytes]) -> Tuple[int, Headers, bytes]:
    """
    ``(status, headers, body)`` of the gateway's answer to a gRPC call for
    `error`: 200, trailers-only, ``grpc-status`` and ``grpc-message``; the
    error's own fields (Retry-After, WWW-Authenticate) are kept.
    """
    headers = status_trailers(code_for(error), error.message)
    raw = headers.raw
    raw[b"Content-Type"] = [content_type or b"application/grpc"]
    raw[b"X-Request-Id"] = [request_id.encode("ascii")]
    raw[b"Date"] = [date]
    for name, value in error.headers:
        headers.addRawHeader(name, value)
    return 200, headers, b""


_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_TIMEOUT = re.compile(rb"(\d{1,8})([HMSmun])\Z")


def parse_timeout(value: Optional[bytes]) -> Optional[float]:
    """``grpc-timeout`` in seconds (``100m`` -> 0.1), or None when absent or invalid."""
    if not value:
        return None
    match = _TIMEOUT.match(value.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def status_of(headers: Optional[Headers]) -> Optional[int]:
    """The ``grpc-status`` in `headers`, or None."""
    if headers is None:
        return None
    return first_int(headers.raw.get(b"Grpc-Status"))
