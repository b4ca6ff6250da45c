"""
The errors the gateway itself answers with, and their JSON body.

One flat family: each class is an HTTP status and a short machine-readable
code; ``GatewayError(message, status=..., code=..., headers=...)`` makes
any other.  Raise one anywhere in the pipeline (or return it as a failure); the
resource turns it into the contract's body
``{"error": code, "message": text, "request_id": id}``.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Iterable, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from twisted.python.failure import Failure

    from twistgate.headers import Headers

HeaderPairs = Tuple[Tuple[bytes, bytes], ...]


def _pairs(headers: Iterable[Tuple["str | bytes", "str | bytes"]]) -> HeaderPairs:
    return tuple(
        (
            k.encode("latin-1") if isinstance(k, str) else k,
            v.encode("latin-1") if isinstance(v, str) else v,
        )
        for k, v in headers
    )


class GatewayError(Exception):
    """An error answered by the gateway: ``status``, ``code``, a message and extra headers."""

    status = 500
    code = "internal_error"
    default_message = "The gateway could not handle the request."

    def __init__(
        self,
        message: Optional[str] = None,
        *,
        headers: Iterable[Tuple["str | bytes", "str | bytes"]] = (),
        code: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        self.message = message or self.default_message
        self.headers: HeaderPairs = _pairs(headers)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        super().__init__(self.message)


class BadRequest(GatewayError):
    status, code, default_message = 400, "bad_request", "The request is malformed."


class Unauthorized(GatewayError):
    status, code, default_message = 401, "unauthorized", "Authentication is required."


class Forbidden(GatewayError):
    status, code, default_message = 403, "forbidden", "Access is denied."


class NotFound(GatewayError):
    status, code, default_message = 404, "not_found", "No such resource."


class RouteNotFound(GatewayError):
    status, code, default_message = 404, "route_not_found", "No route matches the request."


class MethodNotAllowed(GatewayError):
    status, code = 405, "method_not_allowed"

    def __init__(self, allow: Sequence[str], message: Optional[str] = None) -> None:
        self.allow = tuple(allow)
        super().__init__(
            message or "The route does not accept this method.",
            headers=[("Allow", ", ".join(self.allow))],
        )


class RequestTimeout(GatewayError):
    status, code, default_message = 408, "request_timeout", "The request was not received in time."


class PayloadTooLarge(GatewayError):
    status, code, default_message = 413, "payload_too_large", "The request body is too large."


class URITooLong(GatewayError):
    status, code, default_message = 414, "uri_too_long", "The request line is too long."


class TooManyRequests(GatewayError):
    status, code, default_message = 429, "rate_limited", "Too many requests."


#: The same class as `TooManyRequests` (the rate limiter's name for it).
RateLimited = TooManyRequests


class HeadersTooLarge(GatewayError):
    status, code = 431, "request_header_fields_too_large"
    default_message = "The request headers are too large."


class UpstreamUnavailable(GatewayError):
    status, code, default_message = 502, "bad_gateway", "The upstream service could not be reached."


class ServiceUnavailable(GatewayError):
    status, code, default_message = 503, "service_unavailable", "The service is unavailable."


class UpstreamTimeout(GatewayError):
    status, code, default_message = 504, "upstream_timeout", "The upstream service did not answer in time."


#: Headers the JSON error answer sets itself.
_ERROR_OWNED = frozenset(
    {b"content-type", b"content-length", b"x-request-id", b"cache-control", b"date", b"connection", b"transfer-encoding"}
)


def add_error_headers(failure: "Failure", headers: Sequence[Tuple[bytes, bytes]]) -> None:
    """
    Give the `GatewayError` a failure carries extra response headers (from an
    ``on_error`` hook), keeping those it has.  The error is copied first: the
    same instance may be raised for other requests.
    """
    error = copy.copy(failure.value)
    present = {name.lower() for name, _ in error.headers} | _ERROR_OWNED
    error.headers = tuple(error.headers) + tuple((n, v) for n, v in headers if n.lower() not in present)
    failure.value = error


def error_body(code: str, message: str, request_id: str) -> bytes:
    """The contract's JSON error body: one line, ending in a newline (like curl users and log shippers expect)."""
    return json.dumps(
        {"error": code, "message": message, "request_id": request_id},
        separators=(",", ":"),
    ).encode("utf-8") + b"\n"


def error_response(error: GatewayError, request_id: str, date: bytes) -> "Tuple[int, Headers, bytes]":
    """``(status, headers, body)`` of the gateway's own answer for `error`."""
    from twistgate.headers import Headers

    body = error_body(error.code, error.message, request_id)
    headers = Headers()
    raw = headers.raw
    raw[b"Content-Type"] = [b"application/json"]
    raw[b"X-Request-Id"] = [request_id.encode("ascii")]
    raw[b"Cache-Control"] = [b"no-store"]
    raw[b"Date"] = [date]
    for name, value in error.headers:
        headers.addRawHeader(name, value)
    return error.status, headers, body
