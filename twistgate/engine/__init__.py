"""
The HTTP/1.1 engine on httptools: a server protocol for the listeners and a
client protocol with a connection pool for the forwarded hop.

No twisted.web on the hot path and no Twisted private API: bytes on
sockets, one write per response head, headers as `twistgate.headers.Headers`.
See docs/engine.md.
"""

from twistgate.engine.errors import (
    ResponseBodyStopped,
    ResponseBodyTruncated,
    UpstreamClosedConnection,
    UpstreamConnectionError,
    UpstreamProtocolError,
)
from twistgate.engine.http1_server import HTTP1ServerFactory, HTTP1ServerProtocol
from twistgate.engine.limits import ServerLimits
from twistgate.engine.pool import UpstreamPool
from twistgate.engine.request import ServerRequest
from twistgate.engine.response import UpstreamResponse
from twistgate.engine.status import REASONS, reason_for

__all__ = [
    "HTTP1ServerFactory",
    "HTTP1ServerProtocol",
    "REASONS",
    "ResponseBodyStopped",
    "ResponseBodyTruncated",
    "ServerLimits",
    "ServerRequest",
    "UpstreamClosedConnection",
    "UpstreamConnectionError",
    "UpstreamPool",
    "UpstreamProtocolError",
    "UpstreamResponse",
    "reason_for",
]
