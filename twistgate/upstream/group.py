"""
An upstream group at run time: its targets, balancer, pool and agent.

The forwarded hop uses a bare `Agent` over the group's own sized
`HTTPConnectionPool`: no cookie jar, no content decoding, no redirects (see
PITFALLS: treq's client would add all three).  Side calls (health checks and
the like) get a treq `HTTPClient` over the same pool.
"""

from __future__ import annotations

from typing import Any, Tuple

from treq.client import HTTPClient
from twisted.web.client import URI, Agent, HTTPConnectionPool

from twistgate.config.model import TargetConfig, UpstreamConfig
from twistgate.upstream.balancer import RoundRobin


class Target:
    """One upstream server: the bytes the hot path needs, computed once."""

    __slots__ = ("config", "url", "base", "host_header", "uri", "key", "endpoint")

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        default_port = 443 if config.scheme == "https" else 80
        host = f"[{config.host}]" if ":" in config.host else config.host
        authority = host if config.port == default_port else f"{host}:{config.port}"
        self.url = f"{config.scheme}://{authority}"
        self.base = self.url.encode("ascii")
        self.host_header = authority.encode("ascii")
        self.uri = URI.fromBytes(self.base + b"/")
        self.key = (self.uri.scheme, self.uri.host, self.uri.port)
        self.endpoint: Any = None  # set by the Upstream that owns the agent

    def __repr__(self) -> str:
        return f"<Target {self.url}>"


class Upstream:
    """A named group of targets behind one balancer, pool and agent."""

    def __init__(self, config: UpstreamConfig, reactor: Any, agent: Any = None) -> None:
        self.config = config
        self.name = config.name
        self.targets: Tuple[Target, ...] = tuple(Target(t) for t in config.targets)
        self._balancer = RoundRobin(self.targets, [t.weight for t in config.targets])
        self.choose = self._balancer.choose
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = config.pool.max_idle_per_target
        self.pool.cachedConnectionTimeout = config.pool.idle_timeout
        self.pool.retryAutomatically = True
        self.read_timeout = config.timeouts.read
        # `agent` lets tests put an in-memory agent in place of the network.
        self.agent = agent if agent is not None else Agent(reactor, connectTimeout=config.timeouts.connect, pool=self.pool)
        if isinstance(self.agent, Agent):
            # Agent.request() parses the URL and builds an endpoint (IDNA
            # encoding included) on every call: about a third of its cost.
            # Targets are fixed, so both are made once here.
            for target in self.targets:
                target.endpoint = self.agent._getEndpoint(target.uri)
            self.send = self._send_prepared
        else:
            self.send = self._send_generic
        self.http_client = HTTPClient(Agent(reactor, connectTimeout=config.timeouts.connect, pool=self.pool))

    def _send_prepared(self, target: Target, method: bytes, path: bytes, headers: Any, body: Any) -> Any:
        return self.agent._requestWithEndpoint(target.key, target.endpoint, method, target.uri, headers, body, path)

    def _send_generic(self, target: Target, method: bytes, path: bytes, headers: Any, body: Any) -> Any:
        return self.agent.request(method, target.base + path, headers, body)

    def close(self) -> Any:
        """Close idle pooled connections (returns a Deferred)."""
        return self.pool.closeCachedConnections()
