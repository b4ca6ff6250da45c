"""
A generation: everything built from one configuration, ready to serve.

All per-route decisions that can be made at load time are made here (route
table, rewrites, upstream pools, plugin call lists, forwarding policy), so the
request path only looks things up.  A generation is immutable once built;
a reload (later) builds a new one and swaps it in while requests that
started on the old one finish there.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient
from twisted.web.http import datetimeToString

from twistgate.config.model import GatewayConfig, RouteConfig, UpstreamConfig
from twistgate.http import ForwardingPolicy
from twistgate.plugins.manager import GatewayPlugins, PluginContext, build_plugins
from twistgate.plugins.registry import PluginRegistry
from twistgate.routing import RouteTable
from twistgate.stages import BuildContext, build_services, build_stages
from twistgate.upstream.group import Upstream

VIA = b"1.1 twistgate"

_log = Logger()


class Route:
    """A route at run time: its config and what it forwards to."""

    __slots__ = ("name", "config", "upstream", "plugins", "timeout", "preserve_host")

    def __init__(self, config: RouteConfig, upstream: Upstream, plugins: Any, timeout: float) -> None:
        self.name = config.name
        self.config = config
        self.upstream = upstream
        self.plugins = plugins
        self.timeout = timeout
        self.preserve_host = config.preserve_host

    def __repr__(self) -> str:
        return f"<Route {self.name} -> {self.upstream.name}>"


class InFlight:
    """Counts requests being handled, so shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: List[Deferred[None]] = []

    def add(self) -> None:
        self.count += 1

    def done(self) -> None:
        self.count -= 1
        if self.count == 0 and self._waiters:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def idle(self) -> "Deferred[None]":
        """Fires when no request is in flight."""
        if self.count == 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d


class Generation:
    """The gateway as built from one `GatewayConfig`."""

    def __init__(
        self,
        config: GatewayConfig,
        reactor: Any,
        *,
        inflight: Optional[InFlight] = None,
        agent_for: Optional[Callable[[UpstreamConfig], Any]] = None,
        plugin_registry: Optional[PluginRegistry] = None,
    ) -> None:
        self.config = config
        self.clock = reactor
        self.via = VIA
        self.inflight = inflight if inflight is not None else InFlight()
        self.forwarding = ForwardingPolicy(config.trusted_proxies)
        self.upstreams: Dict[str, Upstream] = {
            name: Upstream(upstream, reactor, agent_for(upstream) if agent_for else None)
            for name, upstream in config.upstreams.items()
        }
        # The gateway's own calls (JWKS, plugins' side requests) go through
        # treq over a pool of their own; health checks use each upstream's.
        self.side_pool = HTTPConnectionPool(reactor, persistent=True)
        side_client = HTTPClient(Agent(reactor, connectTimeout=10, pool=self.side_pool))
        self.http_client = side_client
        self.build_context = BuildContext(config=config, clock=reactor, http_client=side_client)
        self.services = build_services(self.build_context)
        self.observers = self.build_context.observers
        stages = {route.name: build_stages(route, self.build_context) for route in config.routes}
        self.plugins: GatewayPlugins = build_plugins(
            config,
            lambda name: PluginContext(name=name, clock=reactor, http_client=side_client),
            registry=plugin_registry,
            stages=stages,
        )
        self.global_plugins = self.plugins.for_route(None)
        default_timeout = config.limits.request_timeout
        entries = []
        for route in config.routes:
            runtime = Route(
                route,
                self.upstreams[route.upstream],
                self.plugins.for_route(route.name),
                route.timeout if route.timeout is not None else default_timeout,
            )
            entries.append((route, runtime))
        self.routes: RouteTable[Route] = RouteTable(entries)

    _date_second = -1
    _date_value = b""

    def http_date(self) -> bytes:
        """The current time as an HTTP date, formatted at most once a second."""
        now = int(self.clock.seconds())
        if now != self._date_second:
            self._date_second = now
            self._date_value = datetimeToString(now)
        return self._date_value

    def exchange_done(self) -> None:
        self.inflight.done()

    def start(self) -> "Deferred[Any]":
        """Start the services (background refreshes, checks) before serving."""
        return _each(self.services.values(), "start")

    def stop(self) -> "Deferred[Any]":
        """Stop the services and close every upstream pool's idle connections."""
        stopped = _each(self.services.values(), "stop")
        pools = [u.pool for u in self.upstreams.values()] + [self.side_pool]
        return stopped.addBoth(
            lambda _: DeferredList([p.closeCachedConnections() for p in pools], consumeErrors=True)
        )

    close = stop


def _each(objects: Any, method: str) -> "Deferred[Any]":
    """Call `method` on each object that has it; wait for all; log failures."""
    calls = []
    for obj in objects:
        fn = getattr(obj, method, None)
        if fn is not None:
            calls.append(maybeDeferred(fn))
    return DeferredList(calls, consumeErrors=True).addCallback(_log_failures, method)


def _log_failures(results: Any, method: str) -> None:
    for ok, result in results:
        if not ok:
            _log.failure("a service failed to {method}", result, method=method)
