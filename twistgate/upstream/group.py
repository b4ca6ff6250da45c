"""
An upstream group at run time: its targets and their state, balancer, pool
and agent, the background work that watches them (health checks, DNS
discovery, ``targets_from`` sources), and `forward()`, the one way a request
is sent to it.  The balancer, health check and target source are extensions
(built-in or from pip packages), made in `twistgate.upstream.wiring`.

`Upstream` is the wiring and the lifetime; its bases carry the rest:
`twistgate.upstream.membership` (the target set and its state),
`twistgate.upstream.choosing` (a target per request) and
`twistgate.upstream.sending` (the client and the send paths).  Bases, not
objects it delegates to: their methods are on the per-request path.

The forwarded hop uses a bare `Agent` over the group's own sized
`HTTPConnectionPool`: no cookie jar, no content decoding, no redirects (see
PITFALLS: treq's client would add all three).  Side calls get a treq
`HTTPClient` over the same pool; health probes go through the forwarding
path itself, so they reach a target exactly as requests do.
"""

from __future__ import annotations

from random import Random
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from twistgate.config.model import RouteConfig, UpstreamConfig
from twistgate.headers import Headers
from twistgate.messages import ProxyRequest
from twistgate.timers import Timers
from twistgate.upstream.budget import RetryBudget
from twistgate.upstream.call import Forwarding
from twistgate.upstream.choosing import TargetChoice
from twistgate.upstream.discovery import Discovery, as_written, make_resolver, needs_dns
from twistgate.upstream.events import UpstreamEvents
from twistgate.upstream.membership import TargetSet
from twistgate.upstream.outlier import OutlierDetector
from twistgate.upstream.retry import CallPolicy, call_policy
from twistgate.upstream.sending import Sending, make_client
from twistgate.upstream.settings import DiscoveryConfig, RetryConfig
from twistgate.upstream.target import Target
from twistgate.upstream.tls import policy_for as upstream_tls_policy, uses_tls
from twistgate.upstream.wiring import build_balancer, build_health, build_targets_from

__all__ = ["Target", "Upstream", "UpstreamCall"]


class UpstreamCall:
    """
    One request's dealings with an upstream: the target(s) tried and when the
    response head arrived.  The exchange keeps it for cancellation and for
    its record (access log, metrics: retries = attempts - 1), and may set
    `interim` to hear the upstream's 1xx responses.
    """

    __slots__ = ("target", "attempts", "head_at", "interim", "upstream", "deadline")

    def __init__(self, interim: Optional[Callable[[int, Headers], None]] = None, deadline: Any = None) -> None:
        self.target: Optional[Target] = None
        self.attempts = 0
        self.head_at: Optional[float] = None
        self.interim = interim
        self.upstream: Optional[str] = None  # the group's name (a split route chooses one per request)
        #: The route timeout not yet armed (the exchange: ``due``, ``timer``, ``arm_route()``,
        #: ``route_expired()``): an attempt's read timer may stand for it (`twistgate.upstream.call`).
        self.deadline = deadline


class Upstream(TargetSet, TargetChoice, Sending):
    """A named group of targets behind one balancer and one client."""

    def __init__(
        self,
        config: UpstreamConfig,
        reactor: Any,
        agent: Any = None,
        *,
        client: Any = None,
        client_factory: Optional[Callable[[UpstreamConfig, Any], Any]] = None,
        events: Optional[UpstreamEvents] = None,
        tls_policy: Any = None,
        resolver: Any = None,
        rng: Optional[Random] = None,
        side_client: Any = None,
        drained: Optional[Set[str]] = None,
    ) -> None:
        """
        :param agent: an `IAgent` to send through instead of the network
            (in-memory upstreams in tests); requests then go by URL.
        :param client: the `twistgate.upstream.client.UpstreamClient` to send
            through; or `client_factory(config, tls_policy)` makes it; default:
            the twisted.web engine's pooled `Agent`.  ``protocol: h2 | h2c``
            upstreams use `twistgate.engine.http2_client.H2UpstreamClient`
            (unless `client` or `agent` is given).
        :param events: where breaker transitions and attempts are reported
            (the plugins and tracer of the generation serving); it outlives
            generations, like this upstream.
        :param tls_policy: the TLS policy of https targets, read beforehand
            (`twistgate.files`); default: built now from ``upstreams.X.tls``.
        :param side_client: the gateway's treq client, for what the upstream
            asks of other services (``targets_from`` sources such as Consul).
        :param drained: the URLs of targets drained by the operator (never
            chosen); the set is the gateway's, shared by every generation's
            upstream of this name (`twistgate.ops.drain`).
        """
        self.config = config
        self.name = config.name
        self.clock = reactor
        #: The per-request timeouts of its calls (read, total, body idle): cheaper than a DelayedCall each.
        self.timers = Timers(reactor)
        self.rng = rng if rng is not None else Random()
        self.drained: Set[str] = drained if drained is not None else set()
        self.events = events if events is not None else UpstreamEvents()
        self.read_timeout = config.timeouts.read
        # https targets verify against upstreams.X.tls (CA, server_name,
        # client certificate) or the system store; built once, here.
        if tls_policy is None:
            tls_policy = upstream_tls_policy(config) if uses_tls(config) else BrowserLikePolicyForHTTPS()
        self.tls_policy = tls_policy
        self.use_client(make_client(config, reactor, self.tls_policy, agent, client, client_factory))

        policies = config.policies
        self.breaker_config = policies.get("circuit_breaker")
        outlier = policies.get("outlier_detection")
        self.outlier = OutlierDetector(outlier, reactor, self._target_moved, self.name) if outlier else None
        retry: RetryConfig = policies.get("retry") or RetryConfig()
        self.budget = RetryBudget(retry.budget, retry.budget_window, retry.budget_min_per_second, reactor)
        #: The strategy and its pick(candidates, request): a target, or (an
        #: extension from a package) a Deferred of one.
        self.balancer, self._pick = build_balancer(config, reactor, self.rng)
        self._only_one_picks_itself = getattr(self.balancer, "only_one_picks_itself", False) is True
        health = policies.get("health_check")
        self.health = (
            build_health(health, self.name, reactor, self.rng, self.request, side_client, self._target_moved)
            if health
            else None
        )
        source = policies.get("targets_from")
        side = side_client or (HTTPClient(Agent(reactor, connectTimeout=10)) if source else None)
        self.targets_from = (
            build_targets_from(source, self.name, reactor, self.rng, side, resolver, self._set_targets) if source else None
        )
        discovery = policies.get("discovery")
        self._resolver = resolver
        self.discovery: Optional[Discovery] = None
        if any(needs_dns(t, discovery) for t in config.targets):
            self.discovery = Discovery(
                discovery or DiscoveryConfig(), config.targets, None, reactor, self._set_targets, self.name
            )
        self._policy = call_policy(config, None)
        self._route_policies: Dict[str, Tuple[RouteConfig, CallPolicy]] = {}
        self.targets: Tuple[Target, ...] = ()
        self._ready: List[Target] = []
        self._fallback: List[List[Target]] = []  # the worse tiers' available targets, best first
        self._tiered = False
        self._set_targets([as_written(t) for t in config.targets if not t.srv])
        self._starts = 0

    # -- forwarding ------------------------------------------------------------

    def policy_for(self, route: Optional[RouteConfig]) -> CallPolicy:
        """The timeouts and retry for `route`'s requests (resolved once per route config)."""
        if route is None:
            return self._policy
        cached = self._route_policies.get(route.name)
        if cached is not None and cached[0] is route:
            return cached[1]
        policy = call_policy(self.config, route)
        self._route_policies[route.name] = (route, policy)
        return policy

    def forward(
        self,
        request: ProxyRequest,
        body: Any,
        call: UpstreamCall,
        preserve_host: bool = False,
        route: Optional[RouteConfig] = None,
        prefer: Optional[Target] = None,
    ) -> "Deferred[Any]":
        """
        Send `request` to a target; fires with the upstream's `IResponse` once
        its head arrived, or fails with a `GatewayError` (502/503/504).
        Cancelling the Deferred cancels the upstream request.  `route`'s
        ``timeouts`` and ``retry`` sections override the upstream's;
        `prefer` is tried first (see `admit`).
        """
        result: Deferred[Any] = Deferred(lambda _: forwarding.cancel())  # `forwarding` is bound below
        forwarding = self.start_forward(request, body, call, preserve_host, route, result.callback, result.errback, prefer)
        return result

    def start_forward(
        self,
        request: ProxyRequest,
        body: Any,
        call: UpstreamCall,
        preserve_host: bool,
        route: Optional[RouteConfig],
        on_head: Callable[[Any], None],
        on_failed: Callable[[Any], None],
        prefer: Optional[Target] = None,
    ) -> Forwarding:
        """
        `forward` with callbacks instead of a Deferred (the exchange's hot
        path): exactly one of ``on_head(response)`` or ``on_failed(failure)``
        is called; the returned `Forwarding`'s ``cancel()`` stops the call
        (``on_failed`` then hears `CancelledError`).
        """
        call.upstream = self.name
        # (`policy_for`'s usual answer, without the call)
        cached = self._route_policies.get(route.name) if route is not None else None
        policy = cached[1] if cached is not None and cached[0] is route else self.policy_for(route)
        return Forwarding(self, policy, request, body, call, preserve_host, prefer, on_head, on_failed)

    # -- lifetime ------------------------------------------------------------

    def start(self) -> None:
        """Start health checks and DNS discovery (counted: one start per generation using it)."""
        self._starts += 1
        if self._starts > 1:
            return
        if self.discovery is not None:
            if self.discovery.resolver is None:
                self.discovery.resolver = self._resolver or make_resolver(self.discovery.config, self.clock)
            self.discovery.start()
        if self.targets_from is not None:
            self.targets_from.start()
        if self.health is not None:
            self.health.start(self.targets)
        for target in self.targets:
            if target.breaker is not None:
                target.breaker.resume()
            if self.outlier is not None:
                self.outlier.resume(target)

    def stop(self) -> None:
        """Stop the background work once the last generation using it stops."""
        if self._starts > 1:
            self._starts -= 1
            return
        self._starts = 0
        if self.discovery is not None:
            self.discovery.stop()
        if self.targets_from is not None:
            self.targets_from.stop()
        if self.health is not None:
            self.health.stop()
        for target in self.targets:
            if target.breaker is not None:
                target.breaker.cancel_timer()
            OutlierDetector.forget(target)
