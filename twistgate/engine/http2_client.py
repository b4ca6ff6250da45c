"""
The forwarded hop over HTTP/2 (``upstreams.X.protocol: h2 | h2c``): an
`UpstreamClient` on the `h2` library.

`H2UpstreamClient` keeps a pool of connections per target.  A request goes
out as a new stream on a connection with room for it (streams are
multiplexed up to the server's SETTINGS_MAX_CONCURRENT_STREAMS); when every
connection is full, or draining after a GOAWAY, another one is opened.
Requests wait for a connection still being set up rather than opening one
each.  A stream the server refused unprocessed (REFUSED_STREAM, or beyond a
GOAWAY's last stream id) is sent again on a fresh connection when it has no
body; otherwise it fails as `StreamRefused`, a connect failure that
``retry`` may repeat safely.

``h2`` is TLS with ALPN (the upstream's TLS policy offers ``h2`` only);
``h2c`` is cleartext with prior knowledge.  Flow control works both ways:
the request body's producer is paused while the stream's window is closed,
and response DATA is acknowledged as the gateway's client consumes it
(a paused relay stops the acknowledgements, so the upstream is held by its
window).  Responses carry their ``trailers`` once the body is over, and 1xx
responses go to the ``interim`` callback.

The client's modules: this one holds the pools and the `UpstreamClient`;
`http2_client_connection` one connection, `http2_client_stream` one
request and its response.  What it shares with the server is in
`http2_common`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.engine.http2_client_connection import H2ClientProtocol
from twistgate.engine.http2_client_stream import H2ClientStream, H2Response, StreamRefused
from twistgate.engine.http2_common import to_h2_fields
from twistgate.headers import Headers

__all__ = ["H2UpstreamClient", "H2Response", "StreamRefused"]


class _ConnectionFactory(Factory):
    def __init__(self, pool: "H2TargetPool", tls: bool) -> None:
        self.pool = pool
        self.tls = tls

    def buildProtocol(self, addr: Any) -> H2ClientProtocol:
        return H2ClientProtocol(self.pool, self.tls)


class H2TargetPool:
    """The connections to one target, and the requests waiting for one."""

    def __init__(self, client: "H2UpstreamClient", key: Any) -> None:
        self.client = client
        self.key = key
        self.connections: List[H2ClientProtocol] = []
        self.connecting = 0
        self.waiting: List[H2ClientStream] = []
        self.endpoint: Any = None
        self.scheme = b"https" if client.tls else b"http"

    def submit(self, stream: H2ClientStream, endpoint: Any) -> None:
        self.endpoint = endpoint
        for connection in self.connections:
            if connection.capacity > 0:
                stream.start(connection)
                return
        self.waiting.append(stream)
        self.dispatch()

    def dispatch(self) -> None:
        """Start waiting requests on connections with room; open a connection when none will have any."""
        waiting = self.waiting
        while waiting:
            connection = next((c for c in self.connections if c.capacity > 0), None)
            if connection is None:
                break
            waiting.pop(0).start(connection)
        # A connection still waiting for the server's SETTINGS counts as one being set up.
        if waiting and self.connecting == 0 and self.endpoint is not None and all(
            c.settings_seen or c.draining or c.lost for c in self.connections
        ):
            self._connect()

    def _connect(self) -> None:
        self.connecting += 1
        d = self.endpoint.connect(_ConnectionFactory(self, self.client.tls))
        d.addErrback(self._connect_failed)

    def connected(self, connection: H2ClientProtocol) -> None:
        self.connecting -= 1
        self.connections.append(connection)
        self.dispatch()

    def _connect_failed(self, failure: Failure) -> None:
        self.connecting -= 1
        waiting, self.waiting = self.waiting, []
        for stream in waiting:
            stream.fail(failure)

    def disconnected(self, connection: H2ClientProtocol) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        self.dispatch()

    def refused(self, stream: H2ClientStream, why: str) -> None:
        """`stream` was not processed: send it again (no body), or fail it as safe to retry."""
        connection = stream.connection
        if connection is not None and connection.streams.get(stream.stream_id) is stream:
            del connection.streams[stream.stream_id]
        if stream.body is None and not stream.redispatched and not stream.result.called:
            stream.redispatched = True
            stream.connection = None
            stream.stream_id = 0
            self.waiting.append(stream)
            self.dispatch()
            return
        stream.fail(Failure(StreamRefused(f"the upstream refused the stream ({why})")))

    def forget(self, stream: H2ClientStream) -> None:
        if stream in self.waiting:
            self.waiting.remove(stream)

    def close(self) -> None:
        for connection in list(self.connections):
            connection.close()


class H2UpstreamClient:
    """
    The `UpstreamClient` of ``protocol: h2`` and ``h2c`` upstreams.

    :param tls: ``h2`` (the targets' endpoints are TLS, with ALPN ``h2``),
        else ``h2c``.
    :param idle_timeout: a connection without streams for this long is closed.
    """

    def __init__(self, clock: Any, *, tls: bool, idle_timeout: float) -> None:
        self.clock = clock
        self.tls = tls
        self.idle_timeout = idle_timeout
        self.pools: Dict[Any, H2TargetPool] = {}

    def request(
        self,
        target: Any,
        method: bytes,
        path: bytes,
        headers: Headers,
        body: Any,
        interim: Optional[Callable[[int, Headers], None]] = None,
    ) -> "Deferred[Any]":
        pool = self.pools.get(target.key)
        if pool is None:
            pool = self.pools[target.key] = H2TargetPool(self, target.key)
        raw = headers.raw
        host = raw.get(b"Host")
        authority = host[0] if host else target.host_header
        fields = [(b":method", method), (b":scheme", pool.scheme), (b":authority", authority), (b":path", path or b"/")]
        fields = to_h2_fields(fields, headers)
        fields.append((b"te", b"trailers"))  # this client reads trailers (gRPC servers insist on it)
        if body is not None:
            length = getattr(body, "length", UNKNOWN_LENGTH)
            if isinstance(length, int) and b"Content-Length" not in raw:
                fields.append((b"content-length", b"%d" % length))
        stream = H2ClientStream(pool, method, fields, body, interim)
        try:
            pool.submit(stream, target.endpoint)
        except Exception:
            stream.fail(Failure())
        return stream.result

    def close(self) -> "Deferred[Any]":
        """GOAWAY every connection; streams in flight finish first."""
        for pool in self.pools.values():
            pool.close()
        d: Deferred[Any] = Deferred()
        d.callback(None)
        return d
