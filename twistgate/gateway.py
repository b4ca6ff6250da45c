"""
A generation: everything built from one configuration, ready to serve.

All per-route decisions that can be made at load time are made here (route
table, rewrites, upstream pools, plugin call lists, forwarding policy), so the
request path only looks things up.  A generation is immutable once built;
a reload (later) builds a new one and swaps it in while requests that
started on the old one finish there.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Set

import attrs

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient
from twisted.web.http import datetimeToString

from twistgate.config.model import GatewayConfig, Location, RouteConfig, UpstreamConfig
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
        previous: Optional["Generation"] = None,
        shared: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """
        :param previous: the generation this one replaces (reload): its
            upstreams whose configuration is unchanged are reused, with their
            pools, health and breaker state.
        :param shared: objects that outlive generations (the operations
            state), put in the build context's services under their keys.
        """
        self.config = config
        self.clock = reactor
        self.via = VIA
        self.number = 0  # set when it starts serving (twistgate.ops)
        self.agent_for = agent_for
        self.plugin_registry = plugin_registry
        self.inflight = inflight if inflight is not None else InFlight()
        self.forwarding = ForwardingPolicy(config.trusted_proxies)
        self.upstreams: Dict[str, Upstream] = {}
        self.borrowed: Set[str] = set()  # reused from `previous`: not ours to start or close yet
        for name, upstream in config.upstreams.items():
            reused = _reusable(previous, upstream)
            if reused is not None:
                self.upstreams[name] = reused
                self.borrowed.add(name)
            else:
                self.upstreams[name] = self._new_upstream(upstream, reactor, agent_for)
        self.owned: Set[str] = set(self.upstreams) - self.borrowed
        # The gateway's own calls (JWKS, plugins' side requests) go through
        # treq over a pool of their own; health checks use each upstream's.
        self.side_pool = HTTPConnectionPool(reactor, persistent=True)
        side_client = HTTPClient(Agent(reactor, connectTimeout=10, pool=self.side_pool))
        self.http_client = side_client
        self.build_context = BuildContext(
            config=config, clock=reactor, http_client=side_client, services=dict(shared or {})
        )
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
        self.routes_by_name: Dict[str, Route] = {route.name: runtime for route, runtime in entries}
        # Services that act on the built generation (wrapping upstream sends
        # for tracing, reading upstream state) get it once it is complete.
        for svc in list(self.services.values()):
            attach = getattr(svc, "attach_generation", None)
            if attach is not None:
                attach(self)

    @staticmethod
    def _new_upstream(config: UpstreamConfig, reactor: Any, agent_for: Optional[Callable[[UpstreamConfig], Any]]) -> Upstream:
        return Upstream(config, reactor, agent_for(config) if agent_for else None)

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
        """Start the services (background refreshes, checks) and the upstreams this generation made."""
        own = [self.upstreams[name] for name in sorted(self.upstreams) if name not in self.borrowed]
        return _each(list(self.services.values()) + own, "start")

    def take_over(self, previous: "Optional[Generation]") -> None:
        """
        This generation now serves in place of `previous`: the upstreams it
        reused become its own to stop and close, and no longer the old one's.
        """
        self.owned |= self.borrowed
        self.borrowed = set()
        if previous is not None:
            previous.owned -= {name for name, u in self.upstreams.items() if previous.upstreams.get(name) is u}

    def stop(self) -> "Deferred[Any]":
        """Stop the services and the upstreams this generation owns; close their pools."""
        owned = [self.upstreams[name] for name in sorted(self.owned)]
        stopped = _each(list(self.services.values()) + owned, "stop")
        pools = [u.pool for u in owned] + [self.side_pool]
        return stopped.addBoth(
            lambda _: DeferredList([p.closeCachedConnections() for p in pools], consumeErrors=True)
        )

    close = stop


def _reusable(previous: "Optional[Generation]", config: UpstreamConfig) -> Optional[Upstream]:
    """`previous`'s upstream of the same name if its configuration is the same (wherever it is written)."""
    if previous is None:
        return None
    candidate = previous.upstreams.get(config.name)
    if candidate is None or _comparable(candidate.config) != _comparable(config):
        return None
    return candidate


def _comparable(value: Any) -> Any:
    """A config value with its `Location`s left out: moving a section in the file changes nothing."""
    if isinstance(value, Location):
        return None
    if attrs.has(type(value)):
        return (type(value),) + tuple(
            _comparable(getattr(value, f.name)) for f in attrs.fields(type(value)) if f.name != "location"
        )
    if isinstance(value, Mapping):
        return tuple(sorted(((k, _comparable(v)) for k, v in value.items()), key=lambda kv: repr(kv[0])))
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    return value


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
