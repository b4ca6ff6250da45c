"""
How an upstream group's attempts leave: the client it sends through (chosen
once, from the configuration) and the send paths over it: the engine's
HTTP/1.1 engine's `pool` (an attempt is its request), the traced `send`,
and the untraced `request` of health probes.

`Sending` is a base of `twistgate.upstream.group.Upstream`: `endpoint_of`
and `send` are on every attempt's path, and a base class costs no call
layer there.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred

from twistgate._twisted_compat.web_client import PooledAgentClient
from twistgate.config.model import UpstreamConfig
from twistgate.engine.http2_client import H2UpstreamClient
from twistgate.engine.upstream_client import PooledClient
from twistgate.headers import Headers
from twistgate.upstream.client import AgentClient, endpoint_for
from twistgate.upstream.events import UpstreamEvents
from twistgate.upstream.target import Target

__all__ = ["Sending", "make_client"]


def make_client(
    config: UpstreamConfig,
    reactor: Any,
    tls_policy: Any,
    agent: Any = None,
    client: Any = None,
    client_factory: Optional[Callable[[UpstreamConfig, Any], Any]] = None,
) -> Any:
    """The `twistgate.upstream.client.UpstreamClient` of a group (see `Upstream`'s parameters)."""
    if client is not None:
        return client
    if config.protocol != "http1" and agent is None:
        # HTTP/2 upstreams have their own client whatever the HTTP/1.1 engine is.
        return H2UpstreamClient(reactor, tls=config.protocol == "h2", idle_timeout=config.pool.idle_timeout)
    if client_factory is not None:
        return client_factory(config, tls_policy)
    if agent is not None:
        return AgentClient(agent)
    return PooledAgentClient(
        reactor,
        tls_policy,
        connect_timeout=config.timeouts.connect,
        max_idle_per_target=config.pool.max_idle_per_target,
        idle_timeout=config.pool.idle_timeout,
    )


def _takes_interim(client: Any) -> bool:
    """Whether ``client.request`` accepts ``interim=`` (see `twistgate.upstream.client`)."""
    import inspect

    try:
        return "interim" in inspect.signature(client.request).parameters
    except (TypeError, ValueError, AttributeError):
        return False


class _WithInterim:
    """An upstream's ``request`` with an interim callback bound (for the traced send path)."""

    __slots__ = ("upstream", "interim")

    def __init__(self, upstream: "Sending", interim: Callable[[int, Headers], None]) -> None:
        self.upstream = upstream
        self.interim = interim

    def request(self, target: Target, method: bytes, path: bytes, headers: Any, body: Any) -> "Deferred[Any]":
        return self.upstream.request(target, method, path, headers, body, interim=self.interim)


class Sending:
    """One HTTP request to one target, through the group's client (a base of `Upstream`)."""

    config: UpstreamConfig
    name: str
    clock: Any
    events: UpstreamEvents
    tls_policy: Any

    def use_client(self, client: Any) -> None:
        """Send through `client` (once, at construction): what it can do decides the send paths."""
        self.client = client
        #: Whether the client sends to `Target.endpoint` (made once per target).
        self._endpoints = not isinstance(client, AgentClient)
        #: Whether the client reports 1xx responses (``request(..., interim=...)``).
        self.interim_capable = _takes_interim(client)
        #: The HTTP/1.1 engine's pool behind the client, or None: an attempt
        #: without a span of its own (no exporting tracer) is then the pool's
        #: request itself (`twistgate.upstream.call`).
        self.pool = client.pool if isinstance(client, PooledClient) else None
        #: The connect timeout `Target.endpoint` is made with (another one gets an endpoint of its own).
        self.connect = self.config.timeouts.connect

    def endpoint_of(self, target: Target, connect: float) -> Any:
        """The endpoint that reaches `target` with a `connect` timeout (made once per target and timeout)."""
        if connect != self.connect:
            return self.with_connect_timeout(target, connect).endpoint
        endpoint = target.endpoint
        if endpoint is None:
            endpoint = target.endpoint = endpoint_for(target, self.clock, self.tls_policy, connect)
        return endpoint

    def send(
        self, target: Target, method: bytes, path: bytes, headers: Any, body: Any, interim: Any = None
    ) -> "Deferred[Any]":
        """
        One HTTP request to `target` (no retries, no timers), traced when
        spans are exported; `interim(status, headers)` hears 1xx responses
        when the client can report them.
        """
        if interim is not None and self.interim_capable:
            return self.events.send_attempt(self.name, _WithInterim(self, interim), target, method, path, headers, body)
        return self.events.send_attempt(self.name, self, target, method, path, headers, body)

    def request(
        self, target: Target, method: bytes, path: bytes, headers: Any, body: Any, interim: Any = None
    ) -> "Deferred[Any]":
        """One HTTP request through the client, untraced (health probes); the target's endpoint is made once."""
        if self._endpoints and target.endpoint is None:
            target.endpoint = endpoint_for(target, self.clock, self.tls_policy, self.config.timeouts.connect)
        if interim is not None and self.interim_capable:
            return self.client.request(target, method, path, headers, body, interim=interim)
        return self.client.request(target, method, path, headers, body)

    def with_connect_timeout(self, target: Target, connect: float) -> Target:
        """
        `target` as `send` should see it for a route whose connect timeout
        differs from the upstream's: a copy with its own endpoint (made once).
        The state stays on `target`; the copy only carries the request.
        """
        if not self._endpoints or connect == self.config.timeouts.connect:
            return target
        variant = target.endpoints.get(connect)
        if variant is None:
            variant = copy.copy(target)
            variant.endpoint = endpoint_for(target, self.clock, self.tls_policy, connect)
            target.endpoints[connect] = variant
        return variant

    def close(self) -> Any:
        """Close idle pooled connections (returns a Deferred)."""
        return self.client.close()
