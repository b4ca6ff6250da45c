"""
How a request on the forwarded hop can fail after the connection was made.

Connecting itself fails with the endpoint's own errors
(`twisted.internet.error.ConnectError` and its family); a cancelled request
fails with `CancelledError`.  Everything else is one of these, each saying
what happened and whether any byte of the request had been written
(``sent``) and whether the connection had served a request before
(``reused``).
"""

from __future__ import annotations

__all__ = [
    "ResponseBodyStopped",
    "ResponseBodyTruncated",
    "UpstreamClosedConnection",
    "UpstreamConnectionError",
    "UpstreamProtocolError",
]


class UpstreamConnectionError(Exception):
    """A request failed on an open upstream connection before its response head."""

    def __init__(self, message: str, *, sent: bool, reused: bool) -> None:
        super().__init__(message)
        self.sent = sent
        self.reused = reused


class UpstreamClosedConnection(UpstreamConnectionError):
    """
    The upstream closed the connection before any byte of a response.  On a
    reused connection this is the keep-alive race (the upstream closed an
    idle connection as the request went out); the pool retries it once when
    that is safe and raises this otherwise: map it to 502 with its own code.
    """


class UpstreamProtocolError(UpstreamConnectionError):
    """The upstream's answer is not valid HTTP/1.1 (or its head was cut off)."""


class ResponseBodyTruncated(Exception):
    """The response body ended before its declared end (connection lost or invalid framing)."""


class ResponseBodyStopped(Exception):
    """The reader stopped the response body (`stopProducing`); its connection was closed."""
