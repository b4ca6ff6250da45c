"""
The twisted.web engine's own answers: the contract's JSON error body for a
request it refuses (`send_error`), and the ``defaults:`` headers that every
such refusal carries (`own_headers`), whether the request or the channel
answers.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.web.http import datetimeToString
from twisted.web.http_headers import Headers

from twistgate.errors import GatewayError, error_body
from twistgate.http import reason_phrase, request_id_from

__all__ = ["own_headers", "send_error"]


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
    for name, value in own_headers(getattr(request, "site", None) or getattr(request.channel, "site", None), request.isSecure()):
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


def own_headers(site: Any, secure: bool) -> Any:
    """What `defaults:` adds to the engine's own refusals (the site knows the serving generation)."""
    own = getattr(site, "own_headers", None)
    return own(secure) if own is not None else ()
