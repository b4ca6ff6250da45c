"""
An upstream group at run time: its targets and their state, balancer, pool
and agent, the background work that watches them (health checks, DNS
discovery), and `forward()`, the one way a request is sent to it.

The forwarded hop uses a bare `Agent` over the group's own sized
`HTTPConnectionPool`: no cookie jar, no content decoding, no redirects (see
PITFALLS: treq's client would add all three).  Side calls get a treq
`HTTPClient` over the same pool; health probes go through the forwarding
path itself, so they reach a target exactly as requests do.
"""

from __future__ import annotations

import copy
from random import Random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import BrowserLikePolicyForHTTPS

from twistgate._twisted_compat.web_client import PooledAgentClient
from twistgate.config.model import RouteConfig, UpstreamConfig
from twistgate.errors import GatewayError
from twistgate.messages import ProxyRequest
from twistgate.upstream.balancer import make_balancer
from twistgate.upstream.breaker import OPEN, CircuitBreaker
from twistgate.upstream.budget import RetryBudget
from twistgate.upstream.call import Forwarding
from twistgate.upstream.discovery import Discovery, Resolved, as_written, is_address, make_resolver, needs_dns
from twistgate.upstream.client import AgentClient, endpoint_for
from twistgate.upstream.events import UpstreamEvents
from twistgate.upstream.failures import CircuitOpen, NoHealthyUpstream, with_retry_after
from twistgate.upstream.health import HealthChecker
from twistgate.upstream.outlier import OutlierDetector
from twistgate.upstream.retry import CallPolicy, call_policy
from twistgate.upstream.settings import DiscoveryConfig, RetryConfig
from twistgate.headers import Headers
from twistgate.upstream.target import Target
from twistgate.upstream.tls import policy_for as upstream_tls_policy, uses_tls

__all__ = ["Target", "Upstream", "UpstreamCall"]

_log = Logger()

#: A health probe's body beyond this is not read (the connection is closed instead).
DRAIN_LIMIT = 64 * 1024



class UpstreamCall:
    """
    One request's dealings with an upstream: the target(s) tried and when the
    response head arrived.  The exchange keeps it for cancellation and for
    its record (access log, metrics: retries = attempts - 1).
    """

    __slots__ = ("target", "attempts", "head_at", "upstream")

    def __init__(self) -> None:
        self.target: Optional[Target] = None
        self.attempts = 0
        self.head_at: Optional[float] = None
        self.upstream: Optional[str] = None  # the group's name (a split route chooses one per request)


class Upstream:
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
        resolver: Any = None,
        rng: Optional[Random] = None,
    ) -> None:
        """
        :param agent: an `IAgent` to send through instead of the network
            (in-memory upstreams in tests); requests then go by URL.
        :param client: the `twistgate.upstream.client.UpstreamClient` to send
            through; or `client_factory(config, tls_policy)` makes it; default:
            the twisted.web engine's pooled `Agent`.
        :param events: where breaker transitions and attempts are reported
            (the plugins and tracer of the generation serving); it outlives
            generations, like this upstream.
        """
        self.config = config
        self.name = config.name
        self.clock = reactor
        self.rng = rng if rng is not None else Random()
        self.events = events if events is not None else UpstreamEvents()
        self.read_timeout = config.timeouts.read
        # https targets verify against upstreams.X.tls (CA, server_name,
        # client certificate) or the system store; built once, here.
        self.tls_policy = upstream_tls_policy(config) if uses_tls(config) else BrowserLikePolicyForHTTPS()
        if client is not None:
            self.client = client
        elif client_factory is not None:
            self.client = client_factory(config, self.tls_policy)
        elif agent is not None:
            self.client = AgentClient(agent)
        else:
            self.client = PooledAgentClient(
                reactor,
                self.tls_policy,
                connect_timeout=config.timeouts.connect,
                max_idle_per_target=config.pool.max_idle_per_target,
                idle_timeout=config.pool.idle_timeout,
            )
        #: Whether the client sends to `Target.endpoint` (made once per target).
        self._endpoints = not isinstance(self.client, AgentClient)

        policies = config.policies
        self.breaker_config = policies.get("circuit_breaker")
        outlier = policies.get("outlier_detection")
        self.outlier = OutlierDetector(outlier, reactor, self._target_moved, self.name) if outlier else None
        retry: RetryConfig = policies.get("retry") or RetryConfig()
        self.budget = RetryBudget(retry.budget, retry.budget_window, retry.budget_min_per_second, reactor)
        self.balancer = make_balancer(config.balance, rng=self.rng, clock=reactor, hash_key=policies.get("hash_key"))
        health = policies.get("health_check")
        self.health = HealthChecker(health, reactor, self._probe, self._target_moved, self.rng, self.name) if health else None
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
        if self._endpoints:
            target.endpoint = endpoint_for(target, self.clock, self.tls_policy, self.config.timeouts.connect)

    def _retire(self, target: Target) -> None:
        """A target left the set: its timers go; requests in flight on it finish."""
        _log.info("upstream {upstream}: target {target} removed", upstream=self.name, target=target.label)
        if target.breaker is not None:
            target.breaker.cancel_timer()
        OutlierDetector.forget(target)

    def _refresh(self) -> None:
        """
        Recompute the candidates: healthy, not ejected, breaker not open, of
        the best tier (priority) that has any.  Backup targets are a worse
        tier: they serve only while no primary is available, and traffic
        returns to a primary as soon as one is (health, breaker, ejection
        each call this on every change).
        """
        ready = [
            t
            for t in self.targets
            if t.healthy and t.outlier.ejected_until is None and (t.breaker is None or t.breaker.state != OPEN)
        ]
        fallback: List[List[Target]] = []
        if self._tiered and ready:
            tiers = sorted({t.priority for t in ready})
            ready, fallback = (
                [t for t in ready if t.priority == tiers[0]],
                [[t for t in ready if t.priority == p] for p in tiers[1:]],
            )
        self._ready = ready
        self._fallback = fallback

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
        self.events.breaker_changed(self.name, target.url, old, new)

    # -- choosing -------------------------------------------------------------

    def admit(
        self, request: ProxyRequest, tried: Sequence[Target] = (), prefer: Optional[Target] = None
    ) -> Tuple[Target, Optional[int]]:
        """
        A target for `request` (preferring one not in `tried`) and its breaker
        ticket; raises 503 `NoHealthyUpstream` / `CircuitOpen` when none is left.

        :param prefer: the target a sticky cookie pins the client to; chosen
            when it is a candidate now and not tried yet, else the balancer
            chooses.  When every target of the best tier refuses (half-open
            breakers), the next tier (the backups) is tried.
        """
        if prefer is not None and prefer not in tried and prefer in self._ready:
            ticket = prefer.breaker.admit() if prefer.breaker is not None else None
            if prefer.breaker is None or ticket is not None:
                return prefer, ticket
        for tier in (self._ready, *self._fallback):
            candidates: Sequence[Target] = tier
            if tried:
                # Each retry prefers a target not tried yet, else one other than the last.
                last = tried[-1]
                candidates = (
                    [t for t in candidates if t not in tried]
                    or [t for t in candidates if t is not last]
                    or candidates
                )
            while candidates:
                target = self.balancer.pick(candidates, request)
                breaker = target.breaker
                if breaker is None:
                    return target, None
                ticket = breaker.admit()
                if ticket is not None:
                    return target, ticket
                candidates = [t for t in candidates if t is not target]
        raise self._unavailable()

    def available(self, target: Target) -> bool:
        """Whether `target` would be chosen now if asked for: of the serving tier, breaker allowing."""
        return target in self._ready and (target.breaker is None or target.breaker.allows())

    def choose(self, request: ProxyRequest) -> Target:
        """The target the balancer would choose now (no breaker admission)."""
        for tier in (self._ready, *self._fallback):
            candidates = [t for t in tier if t.breaker is None or t.breaker.allows()]
            if candidates:
                return self.balancer.pick(candidates, request)
        raise self._unavailable()

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
        prefer: Optional[Target] = None,
    ) -> "Deferred[Any]":
        """
        Send `request` to a target; fires with the upstream's `IResponse` once
        its head arrived, or fails with a `GatewayError` (502/503/504).
        Cancelling the Deferred cancels the upstream request.  `route`'s
        ``timeouts`` and ``retry`` sections override the upstream's;
        `prefer` is tried first (see `admit`).
        """
        call.upstream = self.name
        return Forwarding(self, self.policy_for(route), request, body, call, preserve_host, prefer).start()

    def send(self, target: Target, method: bytes, path: bytes, headers: Any, body: Any) -> "Deferred[Any]":
        """One HTTP request to `target` (no retries, no timers), traced when spans are exported."""
        return self.events.send_attempt(self.name, self.client, target, method, path, headers, body)

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

    # -- health probes -----------------------------------------------------------

    def _probe(self, target: Target) -> "Deferred[int]":
        """GET the health path on `target` through the forwarding path; fires with the status."""
        config = self.health.config  # type: ignore[union-attr]
        headers = Headers({b"Host": [target.host_header], b"User-Agent": [b"twistgate-health-check"]})
        d = maybeDeferred(self.client.request, target, b"GET", config.path.encode("ascii"), headers, None)

        def got(response: Any) -> int:
            # The status is all a probe needs; a short body is read so the
            # connection can be pooled again, a long one is cut.
            response.deliverBody(_Drain())
            return response.code

        return d.addCallback(got)

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
        if self.health is not None:
            self.health.stop()
        for target in self.targets:
            if target.breaker is not None:
                target.breaker.cancel_timer()
            OutlierDetector.forget(target)

    def close(self) -> Any:
        """Close idle pooled connections (returns a Deferred)."""
        return self.client.close()

    def snapshot(self) -> List[Dict[str, Any]]:
        """One plain dict per target (url, weight, healthy, breaker, in_flight, ejected, ewma_ms, last_error...)."""
        now = self.clock.seconds()
        return [target.snapshot(now) for target in self.targets]


class _Drain(Protocol):
    """Reads and drops a probe's response body, up to DRAIN_LIMIT bytes."""

    def __init__(self) -> None:
        self.seen = 0

    def dataReceived(self, data: bytes) -> None:
        self.seen += len(data)
        if self.seen > DRAIN_LIMIT and self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Any = None) -> None:
        pass

