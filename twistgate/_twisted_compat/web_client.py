"""
The twisted.web engine's forwarded hop: Twisted's `Agent` over a sized
`HTTPConnectionPool`, sending to endpoints made once per target.

Two private corners of `twisted.web.client` are used, which is why this lives
in `twistgate._twisted_compat`: `Agent._requestWithEndpoint` (Agent.request
would parse the URL and build an endpoint per request), and the parser's
``connHeaders`` (Twisted's client files the upstream's ``Connection`` field
away from ``response.headers``, but the names it lists must still be
dropped).  `twistgate._twisted_compat.check()` verifies both at startup.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool

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


class PooledAgentClient:
    """The forwarded hop of ``engine: twisted``: a bare `Agent` (no cookies, no decoding, no redirects)."""

    def __init__(self, clock: Any, tls_policy: Any, *, connect_timeout: float, max_idle_per_target: int, idle_timeout: float) -> None:
        self.pool = HTTPConnectionPool(clock, persistent=True)
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
