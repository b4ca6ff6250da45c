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
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from twistgate._twisted_compat.web_client import PooledAgentClient
from twistgate.engine.http2_client import H2UpstreamClient
from twistgate.config.model import RouteConfig, UpstreamConfig
from twistgate.errors import GatewayError
from twistgate.messages import ProxyRequest
from twistgate.upstream.breaker import OPEN, CircuitBreaker
from twistgate.upstream.budget import RetryBudget
from twistgate.upstream.call import Forwarding
from twistgate.upstream.discovery import Discovery, Resolved, as_written, make_resolver, needs_dns
from twistgate.upstream.client import AgentClient, endpoint_for
from twistgate.upstream.events import UpstreamEvents
from twistgate.upstream.failures import CircuitOpen, NoHealthyUpstream, with_retry_after
from twistgate.upstream.outlier import OutlierDetector
from twistgate.upstream.retry import CallPolicy, call_policy
from twistgate.upstream.settings import DiscoveryConfig, RetryConfig
from twistgate.headers import Headers
from twistgate.upstream.target import Target
from twistgate.timers import Timers
from twistgate.upstream.tls import policy_for as upstream_tls_policy, uses_tls
from twistgate.upstream.wiring import build_balancer, build_health, build_targets_from

__all__ = ["Target", "Upstream", "UpstreamCall"]

_log = Logger()


class UpstreamCall:
    """
    One request's dealings with an upstream: the target(s) tried and when the
    response head arrived.  The exchange keeps it for cancellation and for
    its record (access log, metrics: retries = attempts - 1), and may set
    `interim` to hear the upstream's 1xx responses.
    """

    __slots__ = ("target", "attempts", "head_at", "interim", "upstream")

    def __init__(self, interim: Optional[Callable[[int, Headers], None]] = None) -> None:
        self.target: Optional[Target] = None
        self.attempts = 0
        self.head_at: Optional[float] = None
        self.interim = interim
        self.upstream: Optional[str] = None  # the group's name (a split route chooses one per request)


def _admitted(target: Target) -> Optional[Tuple[Target, Optional[int]]]:
    """`target` and its breaker ticket, or None when its breaker lets nothing through."""
    breaker = target.breaker
    if breaker is None:
        return target, None
    ticket = breaker.admit()
    return (target, ticket) if ticket is not None else None


def _untried(tier: Sequence[Target], tried: Sequence[Target]) -> Sequence[Target]:
    """A retry prefers a target not tried yet, else one other than the last."""
    if not tried:
        return tier
    last = tried[-1]
    return [t for t in tier if t not in tried] or [t for t in tier if t is not last] or tier


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

    def __init__(self, upstream: "Upstream", interim: Callable[[int, Headers], None]) -> None:
        self.upstream = upstream
        self.interim = interim

    def request(self, target: Target, method: bytes, path: bytes, headers: Any, body: Any) -> "Deferred[Any]":
        return self.upstream.request(target, method, path, headers, body, interim=self.interim)


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
        if client is not None:
            self.client = client
        elif config.protocol != "http1" and agent is None:
            # HTTP/2 upstreams have their own client whatever the HTTP/1.1 engine is.
            self.client = H2UpstreamClient(reactor, tls=config.protocol == "h2", idle_timeout=config.pool.idle_timeout)
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
        #: Whether the client reports 1xx responses (``request(..., interim=...)``).
        self.interim_capable = _takes_interim(self.client)
        #: The client's callback-style send (the HTTP/1.1 engine's pool: no
        #: Deferred per attempt), or None; see `direct_send`.
        self._client_send = getattr(self.client, "send", None) if self._endpoints else None

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
        target.endpoint = None  # made on first use (`send`)

    def _retire(self, target: Target) -> None:
        """A target left the set: its timers go; requests in flight on it finish."""
        _log.info("upstream {upstream}: target {target} removed", upstream=self.name, target=target.label)
        if target.breaker is not None:
            target.breaker.cancel_timer()
        OutlierDetector.forget(target)

    def _refresh(self) -> None:
        """
        Recompute the candidates: healthy, not ejected, breaker not open, not
        drained, of the best tier (priority) that has any.  Backup targets
        are a worse tier: they serve only while no primary is available, and
        traffic returns to a primary as soon as one is (health, breaker,
        ejection and drains each call this on every change).
        """
        drained = self.drained
        ready = [
            t
            for t in self.targets
            if t.healthy and t.outlier.ejected_until is None and (t.breaker is None or t.breaker.state != OPEN)
            and t.url not in drained
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

    def refresh(self) -> None:
        """The drained set changed (`twistgate.ops.drain`): choose again."""
        self._refresh()

    def candidates(self) -> List[Target]:
        """The targets a request may be sent to now, of every tier."""
        return [t for tier in (self._ready, *self._fallback) for t in tier]

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

    def admit(self, request: ProxyRequest, tried: Sequence[Target] = (), prefer: Optional[Target] = None) -> Any:
        """
        A target for `request` (preferring one not in `tried`) and its breaker
        ticket (a Deferred of both from an extension balancer); raises 503
        `NoHealthyUpstream` / `CircuitOpen` when none is left.

        :param prefer: the target a sticky cookie pins the client to; chosen
            when it is a candidate now and not tried yet, else the balancer
            chooses.  When every target of the best tier refuses (half-open
            breakers), the next tier (the backups) is tried.
        """
        if prefer is not None and prefer not in tried and prefer in self._ready:
            admitted = _admitted(prefer)
            if admitted is not None:
                return admitted
        if not tried:
            return self._place(self._ready, request, self._fallback, tried)
        tiers = [self._ready, *self._fallback]
        return self._place(_untried(tiers[0], tried), request, tiers[1:], tried)

    def _place(self, candidates: Sequence[Target], request: ProxyRequest, rest: List[Any], tried: Sequence[Target]) -> Any:
        pick = self._pick
        while True:
            while candidates:
                target = pick(candidates, request)
                # (Deferred's metaclass is ABCMeta: rule out a Target first, the usual answer.)
                if target.__class__ is not Target and isinstance(target, Deferred):  # an extension balancer answering later
                    return target.addCallback(self._placed, candidates, request, rest, tried)
                admitted = _admitted(target)
                if admitted is not None:
                    return admitted
                candidates = [t for t in candidates if t is not target]
            if not rest:
                raise self._unavailable()
            candidates, rest = _untried(rest[0], tried), rest[1:]

    def _placed(self, target: Target, candidates: Sequence[Target], request: ProxyRequest, rest: List[Any], tried: Sequence[Target]) -> Any:
        admitted = _admitted(target)
        if admitted is not None:
            return admitted
        return self._place([t for t in candidates if t is not target], request, rest, tried)

    def available(self, target: Target) -> bool:
        """Whether `target` would be chosen now if asked for: of the serving tier, breaker allowing."""
        return target in self._ready and (target.breaker is None or target.breaker.allows())

    def choose(self, request: ProxyRequest) -> Any:
        """The target the balancer would choose now (no breaker admission); a Deferred from an extension."""
        for tier in (self._ready, *self._fallback):
            candidates = [t for t in tier if t.breaker is None or t.breaker.allows()]
            if candidates:
                return self._pick(candidates, request)
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
        forwarding = Forwarding(
            self, self.policy_for(route), request, body, call, preserve_host, prefer, on_head=on_head, on_failed=on_failed
        )
        return forwarding.start()

    @property
    def direct_send(self) -> Optional[Callable[..., Any]]:
        """
        ``send(target, method, path, headers, body, interim, on_head, on_failed)``
        returning a handle with ``cancel()``, when the client has it (the
        HTTP/1.1 engine's pool); None otherwise (use `send`).
        """
        return self._direct if self._client_send is not None else None

    def untraced(self) -> bool:
        """Whether attempts go out without a span of their own (then `direct_send` may be used)."""
        tracer = self.events.tracer
        return tracer is None or tracer.exporter is None

    def _direct(
        self, target: Target, method: bytes, path: bytes, headers: Any, body: Any, interim: Any, on_head: Any, on_failed: Any
    ) -> Any:
        if target.endpoint is None:
            target.endpoint = endpoint_for(target, self.clock, self.tls_policy, self.config.timeouts.connect)
        send = self._client_send
        assert send is not None
        return send(target, method, path, headers, body, interim if self.interim_capable else None, on_head, on_failed)

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
        return self.client.close()

    def snapshot(self) -> List[Dict[str, Any]]:
        """One plain dict per target (url, weight, healthy, draining, breaker, in_flight, ejected, ewma_ms, last_error...)."""
        now = self.clock.seconds()
        drained = self.drained
        return [dict(target.snapshot(now), draining=target.url in drained) for target in self.targets]


