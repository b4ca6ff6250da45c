"""
An upstream group at run time: its targets and their state, balancer, pool
and agent, the background work that watches them (health checks, DNS
discovery, ``targets_from`` sources), and `forward()`, the one way a request
is sent to it.  The balancer, health check and target source are extensions
(built-in or from pip packages), made in `twistgate.upstream.wiring`.

The forwarded hop uses a bare `Agent` over the group's own sized
`HTTPConnectionPool`: no cookie jar, no content decoding, no redirects (see
PITFALLS: treq's client would add all three).  Side calls get a treq
`HTTPClient` over the same pool; health probes go through the forwarding
path itself, so they reach a target exactly as requests do.
"""

from __future__ import annotations

import copy
from random import Random
from typing import Any, Dict, List, Optional, Sequence, Tuple

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, _StandardEndpointFactory

from twistgate.config.model import RouteConfig, UpstreamConfig
from twistgate.errors import GatewayError
from twistgate.exchange import ProxyRequest
from twistgate.upstream.breaker import OPEN, CircuitBreaker
from twistgate.upstream.budget import RetryBudget
from twistgate.upstream.call import Forwarding
from twistgate.upstream.discovery import Discovery, Resolved, as_written, is_address, make_resolver, needs_dns
from twistgate.upstream.events import BreakerNotifier, plugin_notifier
from twistgate.upstream.failures import CircuitOpen, NoHealthyUpstream, with_retry_after
from twistgate.upstream.outlier import OutlierDetector
from twistgate.upstream.retry import CallPolicy, call_policy
from twistgate.upstream.settings import DiscoveryConfig, RetryConfig
from twistgate.upstream.target import Target
from twistgate.upstream.tls import policy_for as upstream_tls_policy
from twistgate.upstream.wiring import build_balancer, build_health, build_targets_from

__all__ = ["Target", "Upstream", "UpstreamCall", "plugin_notifier"]

_log = Logger()


class UpstreamCall:
    """
    One request's dealings with an upstream: the target(s) tried and when the
    response head arrived.  The exchange keeps it for cancellation and for
    its record (access log, metrics: retries = attempts - 1).
    """

    __slots__ = ("target", "attempts", "head_at")

    def __init__(self) -> None:
        self.target: Optional[Target] = None
        self.attempts = 0
        self.head_at: Optional[float] = None


class Upstream:
    """A named group of targets behind one balancer, pool and agent."""

    def __init__(
        self,
        config: UpstreamConfig,
        reactor: Any,
        agent: Any = None,
        *,
        notify: Optional[BreakerNotifier] = None,
        resolver: Any = None,
        rng: Optional[Random] = None,
        side_client: Any = None,  # the gateway's treq client, for targets_from sources (Consul)
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = reactor
        self.rng = rng if rng is not None else Random()
        #: Breaker transitions go here (the plugins' on_breaker_state_change);
        #: a reload that reuses this upstream points it at the new plugins.
        self.notify = notify
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = config.pool.max_idle_per_target
        self.pool.cachedConnectionTimeout = config.pool.idle_timeout
        self.pool.retryAutomatically = True
        self.read_timeout = config.timeouts.read
        # https targets verify against upstreams.X.tls (CA, server_name,
        # client certificate) or the system store; built once, here.
        tls = upstream_tls_policy(config) if _uses_tls(config) else BrowserLikePolicyForHTTPS()
        # `agent` lets tests put an in-memory agent in place of the network.
        self.agent = (
            agent
            if agent is not None
            else Agent(reactor, contextFactory=tls, connectTimeout=config.timeouts.connect, pool=self.pool)
        )
        self._prepared = isinstance(self.agent, Agent)
        #: One attempt: send(target, method, path, headers, body) -> Deferred[IResponse].
        #: An instance attribute, so observability can wrap it (ops tracing).
        self.send = self._send
        self.http_client = HTTPClient(Agent(reactor, contextFactory=tls, connectTimeout=config.timeouts.connect, pool=self.pool))

        policies = config.policies
        self.breaker_config = policies.get("circuit_breaker")
        outlier = policies.get("outlier_detection")
        self.outlier = OutlierDetector(outlier, reactor, self._target_moved, self.name) if outlier else None
        retry: RetryConfig = policies.get("retry") or RetryConfig()
        self.budget = RetryBudget(retry.budget, retry.budget_window, retry.budget_min_per_second, reactor)
        #: The strategy and its pick(candidates, request): a target, or (an
        #: extension from a package) a Deferred of one.
        self.balancer, self._pick = build_balancer(config, reactor, self.rng)
        health = policies.get("health_check")
        self.health = (
            build_health(health, self.name, reactor, self.rng, self._send, self.http_client, self._target_moved)
            if health
            else None
        )
        source = policies.get("targets_from")
        side = side_client or (HTTPClient(Agent(reactor, pool=self.pool, connectTimeout=10)) if source else None)
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
        self._tiered = False
        self._set_targets([as_written(t) for t in config.targets if not t.srv])
        self._starts = 0

    # -- the target set ----------------------------------------------------------

    def _set_targets(self, resolved: Sequence[Resolved]) -> None:
        """Make `resolved` the target set, keeping the state of targets that stay."""
        existing = {t.ident: t for t in self.targets}
        targets: List[Target] = []
        changed = False
        for spec in resolved:
            fresh = Target(
                spec.config, address=spec.address, port=spec.port, host=spec.host,
                weight=spec.weight, priority=spec.priority,
            )  # fmt: skip
            old = existing.pop(fresh.ident, None)
            if old is not None:
                if (old.weight, old.priority) != (fresh.weight, fresh.priority):
                    old.weight, old.priority = fresh.weight, fresh.priority
                    changed = True
                targets.append(old)
            elif fresh.ident not in {t.ident for t in targets}:
                self._adopt(fresh)
                targets.append(fresh)
        for gone in existing.values():
            self._retire(gone)
        if tuple(targets) == self.targets and not existing and not changed:
            return  # the same set again (most DNS refreshes): nothing to rebuild
        self.targets = tuple(targets)
        self._tiered = len({t.priority for t in targets}) > 1
        self.balancer.rebuild(self.targets)
        if self.health is not None:
            self.health.watch(self.targets)
        self._refresh()

    def _adopt(self, target: Target) -> None:
        if self.breaker_config is not None:
            target.breaker = CircuitBreaker(
                self.breaker_config, self.clock, lambda old, new, t=target: self._breaker_moved(t, old, new)
            )
        if self._prepared:
            target.endpoint = self._endpoint(target, self.config.timeouts.connect)

    def _retire(self, target: Target) -> None:
        """A target left the set: its timers go; requests in flight on it finish."""
        _log.info("upstream {upstream}: target {target} removed", upstream=self.name, target=target.label)
        if target.breaker is not None:
            target.breaker.cancel_timer()
        OutlierDetector.forget(target)

    def _refresh(self) -> None:
        """Recompute the candidates: healthy, not ejected, breaker not open (best priority first)."""
        ready = [
            t
            for t in self.targets
            if t.healthy and t.outlier.ejected_until is None and (t.breaker is None or t.breaker.state != OPEN)
        ]
        if self._tiered and ready:
            best = min(t.priority for t in ready)
            ready = [t for t in ready if t.priority == best]
        self._ready = ready

    def _target_moved(self, target: Target) -> None:
        self._refresh()

    def _breaker_moved(self, target: Target, old: str, new: str) -> None:
        log = _log.warn if new == OPEN else _log.info
        log(
            "upstream {upstream}: circuit breaker of {target} {old} -> {new}",
            upstream=self.name,
            target=target.label,
            old=old,
            new=new,
        )
        self._refresh()
        if self.notify is not None:
            try:
                self.notify(upstream=self.name, target=target.url, old=old, new=new)
            except Exception:
                _log.failure("breaker state change notification failed")

    # -- choosing -------------------------------------------------------------

    def admit(self, request: ProxyRequest, tried: Sequence[Target] = ()) -> Any:
        """
        A target for `request` (preferring one not in `tried`) and its breaker
        ticket (a Deferred of both from an extension balancer); raises 503
        `NoHealthyUpstream` / `CircuitOpen` when none is left.
        """
        candidates: Sequence[Target] = self._ready
        if tried:
            # Each retry prefers a target not tried yet, else one other than the last.
            last = tried[-1]
            candidates = (
                [t for t in candidates if t not in tried]
                or [t for t in candidates if t is not last]
                or candidates
            )
        return self._place(candidates, request)

    def _place(self, candidates: Sequence[Target], request: ProxyRequest) -> Any:
        pick = self._pick
        while candidates:
            target = pick(candidates, request)
            if isinstance(target, Deferred):  # an extension balancer answering later
                return target.addCallback(self._placed, candidates, request)
            breaker = target.breaker
            if breaker is None:
                return target, None
            ticket = breaker.admit()
            if ticket is not None:
                return target, ticket
            candidates = [t for t in candidates if t is not target]
        raise self._unavailable()

    def _placed(self, target: Target, candidates: Sequence[Target], request: ProxyRequest) -> Any:
        ticket = target.breaker.admit() if target.breaker is not None else None
        if target.breaker is None or ticket is not None:
            return target, ticket
        return self._place([t for t in candidates if t is not target], request)

    def choose(self, request: ProxyRequest) -> Any:
        """The target the balancer would choose now (no breaker admission); a Deferred from an extension."""
        candidates = [t for t in self._ready if t.breaker is None or t.breaker.allows()]
        if not candidates:
            raise self._unavailable()
        return self._pick(candidates, request)

    def _unavailable(self) -> GatewayError:
        up = [t for t in self.targets if t.healthy and t.outlier.ejected_until is None]
        blocked = [t.breaker for t in up if t.breaker is not None and not t.breaker.allows()]
        if up and len(blocked) == len(up):
            waits = [w for w in (b.retry_after() for b in blocked) if w is not None]
            return with_retry_after(CircuitOpen(), min(waits) if waits else None)
        wait = self.outlier.retry_after(self.targets) if self.outlier is not None else None
        return with_retry_after(NoHealthyUpstream(), wait)

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
    ) -> "Deferred[Any]":
        """
        Send `request` to a target; fires with the upstream's `IResponse` once
        its head arrived, or fails with a `GatewayError` (502/503/504).
        Cancelling the Deferred cancels the upstream request.  `route`'s
        ``timeouts`` and ``retry`` sections override the upstream's.
        """
        return Forwarding(self, self.policy_for(route), request, body, call, preserve_host).start()

    def _send(self, target: Target, method: bytes, path: bytes, headers: Any, body: Any) -> Any:
        """One HTTP request to `target` (no retries, no timers); `self.send` may be wrapped (tracing)."""
        if not self._prepared:
            return self.agent.request(method, target.base + path, headers, body)
        return self.agent._requestWithEndpoint(target.key, target.endpoint, method, target.uri, headers, body, path)

    def with_connect_timeout(self, target: Target, connect: float) -> Target:
        """
        `target` as `send` should see it for a route whose connect timeout
        differs from the upstream's: a copy with its own endpoint (made once).
        The state stays on `target`; the copy only carries the request.
        """
        if not self._prepared or connect == self.config.timeouts.connect:
            return target
        variant = target.endpoints.get(connect)
        if variant is None:
            variant = copy.copy(target)
            variant.endpoint = self._endpoint(target, connect)
            target.endpoints[connect] = variant
        return variant

    def _endpoint(self, target: Target, connect: float) -> Any:
        """
        The endpoint for `target` with this connect timeout.  Agent.request()
        would parse the URL and build an endpoint (IDNA included) on every
        call: about a third of its cost; targets are fixed, so it is made once.
        """
        factory = getattr(self.agent, "_endpointFactory", None)
        policy = getattr(factory, "_policyForHTTPS", None)
        address = target.address if target.address is not None else (target.name if is_address(target.name) else None)
        if address is not None and policy is not None:
            # Straight to the address (HostnameEndpoint would resolve even a
            # literal, in a thread); TLS still checks the configured name.
            kind = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
            endpoint = kind(self.clock, address, target.port, timeout=connect, bindAddress=factory._bindAddress)
            if target.config.scheme == "https":
                name = target.name.encode("ascii") if target.name.isascii() else target.name.encode("idna")
                endpoint = wrapClientTLS(policy.creatorForNetloc(name, target.port), endpoint)
            return endpoint
        if policy is not None and connect != self.config.timeouts.connect:
            return _StandardEndpointFactory(self.clock, policy, connect, factory._bindAddress).endpointForURI(target.uri)
        return self.agent._getEndpoint(target.uri)

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

    def close(self) -> Any:
        """Close idle pooled connections (returns a Deferred)."""
        return self.pool.closeCachedConnections()

    def snapshot(self) -> List[Dict[str, Any]]:
        """One plain dict per target (url, weight, healthy, breaker, in_flight, ejected, ewma_ms, last_error...)."""
        now = self.clock.seconds()
        return [target.snapshot(now) for target in self.targets]


def _uses_tls(config: UpstreamConfig) -> bool:
    return "tls" in config.policies or any(t.scheme == "https" for t in config.targets)
