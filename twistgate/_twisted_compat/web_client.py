"""
The twisted.web engine's forwarded hop: Twisted's `Agent` over a sized
`HTTPConnectionPool`, sending to endpoints made once per target.

Private corners of `twisted.web.client` are used, which is why this lives
in `twistgate._twisted_compat`: `Agent._requestWithEndpoint` (Agent.request
would parse the URL and build an endpoint per request), the parser's
``connHeaders`` (Twisted's client files the upstream's ``Connection`` field
away from ``response.headers``, but the names it lists must still be
dropped), and the pool's protocol factory (`_HTTP11ClientFactory`) with
the protocol's ``_finishResponse_WAITING``: Twisted returns a connection to
its pool unless the ``Connection`` field is exactly ``close``, so an
upstream that says ``Close`` (or ``keep-alive, close``, or answers HTTP/1.0
without ``keep-alive``) had its dying connection reused for the next
request (issue 18); `_ClosingAwareProtocol` gives such a connection up.
`twistgate._twisted_compat.check()` verifies all of them at startup.

What ``engine: twisted`` does *not* get (the HTTP/1.1 engine's client has
it): a peek at an idle connection before reuse, and the retry on a fresh
connection of a request with a body that met a stale pooled connection.
Twisted retries only bodiless GET/HEAD/OPTIONS/DELETE/TRACE there; any other
request in that race gets 502 ``upstream_closed_connection``.  Keeping
``pool.idle_timeout`` below the upstreams' keep-alive timeouts (the default
4 s is) makes the race rare.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.web._newclient import HTTP11ClientProtocol
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory

from twistgate.headers import Headers
from twistgate.upstream.client import AgentResponse, to_twisted_headers

__all__ = ["PooledAgentClient", "connection_header"]


def connection_header(response: Any) -> Optional[list]:
    """The upstream's `Connection` field, read from the client parser."""
    # Response._transport is the parser's TransportProxyProducer around the
    # TCP transport, whose (endpoint-wrapped) protocol, HTTP11ClientProtocol,
    # holds the parser until the body is done; the head callback runs while
    # it is there.
    transport = getattr(getattr(response, "_transport", None), "_producer", None)
    protocol = getattr(transport, "protocol", None)
    protocol = getattr(protocol, "_wrappedProtocol", protocol)  # endpoints wrap it
    parser = getattr(protocol, "_parser", None)
    conn = getattr(parser, "connHeaders", None)
    return conn.getRawHeaders(b"Connection") if conn is not None else None


def ends_connection(version: Any, connection: Any) -> bool:
    """
    Whether a response ends its connection: a ``close`` token in any letter
    case, among any others, in any ``Connection`` field; or HTTP/1.0
    without ``keep-alive`` (RFC 9112 §9.3).
    """
    tokens = {token.strip().lower() for value in connection or () for token in value.split(b",")}
    if b"close" in tokens:
        return True
    return tuple(version or ())[1:] == (1, 0) and b"keep-alive" not in tokens


class _ClosingAwareProtocol(HTTP11ClientProtocol):
    """Twisted's client protocol, giving up every connection its response said to end (Twisted: only ``close``)."""

    def _finishResponse_WAITING(self, rest: bytes) -> None:
        parser = self._parser
        response = getattr(parser, "response", None)
        if parser is not None and response is not None:
            if ends_connection(response.version, parser.connHeaders.getRawHeaders(b"Connection")):
                parser.connHeaders.setRawHeaders(b"Connection", [b"close"])  # what Twisted checks for
        super()._finishResponse_WAITING(rest)


class _ClosingAwareFactory(_HTTP11ClientFactory):
    def buildProtocol(self, addr: Any) -> HTTP11ClientProtocol:
        return _ClosingAwareProtocol(self._quiescentCallback)


class _ClosingAwarePool(HTTPConnectionPool):
    _factory = _ClosingAwareFactory


class PooledAgentClient:
    """The forwarded hop of ``engine: twisted``: a bare `Agent` (no cookies, no decoding, no redirects)."""

    def __init__(self, clock: Any, tls_policy: Any, *, connect_timeout: float, max_idle_per_target: int, idle_timeout: float) -> None:
        self.pool = _ClosingAwarePool(clock, persistent=True)
        self.pool.maxPersistentPerHost = max_idle_per_target
        self.pool.cachedConnectionTimeout = idle_timeout
        self.pool.retryAutomatically = True
        self.agent = Agent(clock, contextFactory=tls_policy, connectTimeout=connect_timeout, pool=self.pool)

    def request(self, target: Any, method: bytes, path: bytes, headers: Headers, body: Any) -> "Deferred[Any]":
        d = self.agent._requestWithEndpoint(  # type: ignore[attr-defined]
            target.key, target.endpoint, method, target.uri, to_twisted_headers(headers), body, path
        )
        return d.addCallback(lambda response: AgentResponse(response, connection_header(response)))

    def close(self) -> "Deferred[Any]":
        return self.pool.closeCachedConnections()
