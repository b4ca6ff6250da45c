"""
A generation: everything built from one configuration, ready to serve.

All per-route decisions that can be made at load time are made here (route
table, rewrites, upstream clients, each route's chain of policies and
plugins, forwarding policy), so the request path only looks things up.  A
generation is immutable once built; a reload builds a new one and swaps it
in while requests that started on the old one finish there.

What outlives a generation is `Shared`: the operations state (metrics,
stats, reload history) and the `UpstreamEvents` every upstream reports to.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Set

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http import datetimeToString

from twistgate import chain
from twistgate.answers import Redirect, Respond
from twistgate.config.model import ConfigError, GatewayConfig, Location, RouteConfig, UpstreamConfig
from twistgate.engine.upstream_client import pooled_client_factory
from twistgate.files import FileMaterial, read_files_or_raise
from twistgate.destination import Destination
from twistgate.own_answers import build_own_answers
from twistgate.http import ForwardingPolicy
from twistgate.messages import RouteInfo
from twistgate.ops.runtime import Operations
from twistgate.plugins.calls import RouteChain
from twistgate.plugins.instances import GatewayPlugins, build_plugins
from twistgate.plugins.registry import PluginContext, PluginRegistry
from twistgate.plugins.metrics import PluginMetrics
from twistgate.plugins.store import MemoryStore, PluginStore
from twistgate.routing import RouteTable
from twistgate.services import Services, build_services
from twistgate.timers import Timers
from twistgate.upstream.events import UpstreamEvents
from twistgate.upstream.group import Upstream
from twistgate.validation import validate

__all__ = ["Generation", "InFlight", "Route", "Shared", "comparable"]

VIA = b"1.1 twistgate"

_log = Logger()


class Route:
    """
    A route at run time: its config, its chain, and either where it sends
    requests (`destination`: one upstream or a split) or the answer it gives
    itself (`answer`: redirect or respond).
    """

    __slots__ = (
        "name", "config", "upstream", "destination", "answer", "chain", "timeout", "preserve_host", "info",
        "max_request_body", "forward", "start_forward", "responds", "trace", "bare", "prepared_forwarding",
    )  # fmt: skip

    def __init__(
        self,
        config: RouteConfig,
        destination: Optional[Destination],
        chain: RouteChain,
        timeout: float,
        *,
        answer: Any = None,
        max_request_body: int = 0,
        trace: Any = None,
        blind: bool = False,
    ) -> None:
        """:param trace: the `Tracer` when trace propagation is the chain's only layer (`twistgate.chain.only_tracing`)."""
        self.name = config.name
        self.config = config
        self.destination = destination
        #: The upstream of a single-upstream route (a split's first arm); None when the route answers itself.
        self.upstream: Optional[Upstream] = destination.upstream if destination is not None else None
        #: ``(request, body, call, preserve_host, route config) -> Deferred``: the upstream's own
        #: forward when there is nothing to choose (one upstream, no sticky), else the destination's.
        self.forward: Any = None
        #: The same with callbacks, ``(..., on_head, on_failed) -> cancellable`` (the exchange's hot path).
        self.start_forward: Any = None
        if destination is not None:
            simple = destination.sticky is None and not destination.split
            self.forward = destination.upstream.forward if simple else destination.forward
            self.start_forward = destination.upstream.start_forward if simple else destination.start_forward
        self.answer = answer
        self.chain = chain
        #: Some layer of the chain has an ``on_response``: else a response goes out without asking the chain.
        self.responds = bool(chain.order("on_response"))
        #: The tracer of a route whose only layer is trace propagation: the exchange
        #: sends the trace on itself, without a call through the chain.
        self.trace = trace
        #: Nothing reads or edits the request between the exchange and the upstream
        #: (no layer, or only tracing): the exchange skips the chain.
        self.bare = destination is not None and (chain.empty or trace is not None)
        #: Nothing reads or edits the forwarding fields on the request (`twistgate.chain.forwarding_blind`):
        #: they go as one prepared block (`ForwardingPolicy.block`), not set field by field.
        self.prepared_forwarding = destination is not None and blind
        self.timeout = timeout
        self.preserve_host = config.preserve_host
        self.max_request_body = max_request_body
        upstream_name = self.upstream.name if self.upstream is not None else ""
        self.info = RouteInfo(name=config.name, config=config, upstream=upstream_name)

    @property
    def plugins(self) -> RouteChain:
        """The former name of `chain`."""
        return self.chain

    def __repr__(self) -> str:
        where = ",".join(self.destination.names) if self.destination is not None else "itself"
        return f"<Route {self.name} -> {where}>"


class InFlight:
    """Counts requests being handled, so shutdown and reload can wait for them."""

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


@attrs.define
class Shared:
    """
    What the generations of one gateway share: it outlives each of them.

    :ivar plugin_memory: the in-memory backend of the plugins' stores (made
        by the first generation that uses it): a reload keeps their state.
    """

    ops: Operations
    events: UpstreamEvents = attrs.field(factory=UpstreamEvents)
    plugin_memory: Optional[MemoryStore] = None
    #: ``(rate_limiting section, clock) -> backend`` for the memory backend
    #: (a worker's: the supervisor decides for the whole host); None: in process.
    memory_limits: Optional[Callable[[Any, Any], Any]] = None


class Generation:
    """The gateway as built from one `GatewayConfig`."""

    def __init__(
        self,
        config: GatewayConfig,
        reactor: Any,
        *,
        agent_for: Optional[Callable[[UpstreamConfig], Any]] = None,
        client_for: Optional[Callable[[UpstreamConfig, Any], Any]] = None,
        plugin_registry: Optional[PluginRegistry] = None,
        previous: Optional["Generation"] = None,
        shared: Optional[Shared] = None,
        files: Optional[FileMaterial] = None,
    ) -> None:
        """
        :param agent_for: an `IAgent` per upstream instead of the network
            (in-memory upstreams in tests).
        :param client_for: ``(upstream config, tls policy) -> UpstreamClient``:
            the forwarded hop's client (the engine's); default: Twisted's Agent.
        :param previous: the generation this one replaces (reload): its
            upstreams whose configuration is unchanged are reused, with their
            pools, health and breaker state.
        :param shared: what outlives generations; default: ``previous``'s, or new.
        :param files: what the configuration's files hold, read beforehand
            (a reload reads them in a thread); default: read now.
        """
        issues = validate(config)  # pure: the same checks as `twistgate check`
        if issues:
            raise ConfigError(issues)
        self.files = files if files is not None else read_files_or_raise(config)
        self.config = config
        self.clock = reactor
        #: Each request's route timeout (`twistgate.timers`: cheaper than a DelayedCall each).
        self.timers = Timers(reactor)
        self.via = VIA
        self.number = 0  # set when it starts serving (Operations.adopt)
        self.retired = False  # stopped after a reload replaced it
        self.agent_for = agent_for
        if client_for is None and agent_for is None and config.engine == "httptools":
            client_for = pooled_client_factory(reactor, on_event=self._pool_event)
        self.client_for = client_for
        self.plugin_registry = plugin_registry
        if shared is None:
            shared = previous.shared if previous is not None else Shared(Operations(reactor))
        self.shared = shared
        self.ops = shared.ops
        self.inflight = InFlight()
        #: Exchanges relaying a response without a length (event streams...): no route timeout
        #: bounds them, so a reload's drain (``websocket.drain_timeout``) ends those left.
        self.streams: Set[Any] = set()
        self.forwarding = ForwardingPolicy(config.trusted_proxies)
        # The gateway's own calls (JWKS, OTLP, discovery, plugins' side
        # requests) go through treq over a pool of their own; health checks
        # use each upstream's client.
        self.side_pool = HTTPConnectionPool(reactor, persistent=True)
        self.side_agent = Agent(reactor, connectTimeout=10, pool=self.side_pool)  # bare: forward auth's subrequests
        self.http_client = HTTPClient(self.side_agent)
        self.upstreams: Dict[str, Upstream] = {}
        self.borrowed: Set[str] = set()  # reused from `previous`: not ours to start or close yet
        for name, upstream in config.upstreams.items():
            reused = _reusable(previous, upstream)
            if reused is not None:
                self.upstreams[name] = reused
                self.borrowed.add(name)
            else:
                self.upstreams[name] = self._new_upstream(upstream)
        self.owned: Set[str] = set(self.upstreams) - self.borrowed
        if shared.plugin_memory is None:
            shared.plugin_memory = MemoryStore(reactor)
        self.services: Services = build_services(
            config, reactor, self.http_client, self.ops, self.upstreams, self.files,
            side_agent=self.side_agent, plugin_memory=shared.plugin_memory,
            memory_limits=shared.memory_limits,
        )
        #: Callables given each finished exchange's record; others (tests, embedders) may add theirs.
        self.observers = list(self.services.observers)
        policies = {route.name: chain.build_policies(route, self.services) for route in config.routes}
        self.plugins: GatewayPlugins = build_plugins(
            config,
            lambda name: PluginContext(
                name=name,
                clock=reactor,
                http_client=self.http_client,
                store=PluginStore(self.services.plugin_store, name),
                metrics=PluginMetrics(name, self.ops.registry, self.ops.plugin_metrics),
            ),
            registry=plugin_registry,
            stages=policies,
        )
        self.global_plugins = self.plugins.for_route(None)
        default_timeout = config.limits.request_timeout
        default_body = config.limits.max_request_body
        entries = []
        for route in config.routes:
            destination = self._destination(route)
            layers = self.plugins.for_route(route.name)
            stages = policies[route.name]
            runtime = Route(
                route,
                destination,
                layers,
                route.timeout if route.timeout is not None else default_timeout,
                answer=Redirect(route.redirect) if route.redirect else Respond(route.respond) if route.respond else None,
                max_request_body=route.max_request_body if route.max_request_body is not None else default_body,
                trace=chain.only_tracing(stages, layers),
                blind=destination is not None
                and chain.forwarding_blind(route, self.services, [upstream.balancer for upstream, _ in destination.arms]),
            )
            entries.append((route, runtime))
        self.routes: RouteTable[Route] = RouteTable(entries)
        self.routes_by_name: Dict[str, Route] = {route.name: runtime for route, runtime in entries}
        #: The most body any route accepts: what an engine reads before the route is known.
        self.body_cap = max([default_body] + [r.max_request_body for _, r in entries])
        #: What `defaults:` gives the answers no route makes (404, 405, engine refusals).
        self.own_answers = build_own_answers(config.defaults, self.services)
        #: Listener name -> the HTTPS port its requests are redirected to.
        self.https_redirects: Dict[str, int] = {
            listener.name: listener.redirect_https for listener in config.listeners if listener.redirect_https
        }

    def _destination(self, route: RouteConfig) -> Optional[Destination]:
        if route.split:
            arms = [(self.upstreams[arm.upstream], arm.weight) for arm in route.split]
        elif route.upstream:
            arms = [(self.upstreams[route.upstream], 1)]
        else:
            return None
        return Destination(arms, route.sticky)

    def _new_upstream(self, config: UpstreamConfig) -> Upstream:
        common = dict(
            events=self.shared.events, tls_policy=self.files.upstream_tls.get(config.name), side_client=self.http_client,
            drained=self.ops.drains.setdefault(config.name, set()),  # the operator's drains outlive a rebuild
        )
        if self.agent_for is not None:
            return Upstream(config, self.clock, self.agent_for(config), **common)
        if self.client_for is not None:
            return Upstream(config, self.clock, client_factory=self.client_for, **common)
        return Upstream(config, self.clock, **common)

    def _pool_event(self, event: str, upstream: str) -> None:
        """The forwarded hop's pool: a stale connection retried, or one the upstream closed."""
        self.ops.metrics.upstream_connection_event(event, upstream)

    _date_second = -1
    _date_value = b""

    def http_date(self) -> bytes:
        """The current time as an HTTP date, formatted at most once a second."""
        now = int(self.clock.seconds())
        if now != self._date_second:
            self._date_second = now
            self._date_value = datetimeToString(now)
        return self._date_value

    # -- lifetime ------------------------------------------------------------

    def serve(self) -> int:
        """
        This generation now answers new requests: upstream events (breaker
        transitions, attempt spans) go to its plugins and tracer, metrics
        count it.  Returns its number.
        """
        self.shared.events.serve(self.plugins, self.services.tracer)
        return self.ops.adopt(self)

    def start(self) -> "Deferred[Any]":
        """Start the services (background refreshes, checks) and the upstreams this generation made."""
        own = [self.upstreams[name] for name in sorted(self.upstreams) if name not in self.borrowed]
        return _each(self.services.lifetimes + own, "start")

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
        """Stop the services and the upstreams this generation owns; close their connections."""
        owned = [self.upstreams[name] for name in sorted(self.owned)]
        stopped = _each(self.services.lifetimes + owned, "stop")
        closing = [u.close for u in owned] + [self.side_pool.closeCachedConnections]
        return stopped.addBoth(lambda _: DeferredList([maybeDeferred(c) for c in closing], consumeErrors=True))

    close = stop


def _reusable(previous: "Optional[Generation]", config: UpstreamConfig) -> Optional[Upstream]:
    """`previous`'s upstream of the same name if its configuration is the same (wherever it is written)."""
    if previous is None:
        return None
    candidate = previous.upstreams.get(config.name)
    if candidate is None or comparable(candidate.config) != comparable(config):
        return None
    return candidate


def comparable(value: Any) -> Any:
    """A config value with its `Location`s left out: moving a section in the file changes nothing."""
    if isinstance(value, Location):
        return None
    if attrs.has(type(value)):
        return (type(value),) + tuple(
            comparable(getattr(value, f.name)) for f in attrs.fields(type(value)) if f.name != "location"
        )
    if isinstance(value, Mapping):
        return tuple(sorted(((k, comparable(v)) for k, v in value.items()), key=lambda kv: repr(kv[0])))
    if isinstance(value, (list, tuple)):
        return tuple(comparable(v) for v in value)
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
