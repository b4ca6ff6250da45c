"""
Bytes on sockets: the HTTP engines behind the listeners and the forwarded hop.

The gateway's exchange talks to a client's request only through the
`twistgate.engine.api.Downstream` interface, so the engines are
interchangeable:

* the HTTP/1.1 engine on httptools (the default): a server protocol for
  the listeners (`HTTP1ServerFactory`) and a client protocol with a
  connection pool for the forwarded hop (`UpstreamPool`); no twisted.web on
  the hot path and no Twisted private API; one write per response head,
  headers as `twistgate.headers.Headers` (docs/engine.md);
* HTTP/2 on the `h2` library (`http2_server`, `http2_client`), chosen per
  connection by ALPN or the h2c preface (`protocol_switch`);
* twisted.web (``engine: twisted``, `twisted_web`), kept for one release.
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
from twistgate.reasons import REASONS, reason_for

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
