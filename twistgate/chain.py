"""
The request path, and the built-in policies in the order requests meet them.

::

    client ─▶ engine (twistgate.engine)           parse, edge limits: 400 408 413 414 431
           ─▶ GatewayResource.render               the generation serving now
           ─▶ Exchange.start (twistgate.exchange)  redirect_https: 308; target and Host, path
                                                   normalised, route matched: 404 405; body: 413
           ─▶ POLICIES below, in this order        on_request: any layer may answer itself
           ─▶ the route's plugins                  on_request, in configuration order
           ─▶ Destination.forward                  split arm, sticky target; then Upstream.forward:
                                                   a target, breakers, retries, timeouts: 502 503 504
                                                   (or the route's redirect / respond answer)
           ◀─ the same layers in reverse           on_response (an onion: a layer that answered
                                                   is unwound only through itself and the layers outside it)
           ◀─ BodyRelay (twistgate.relay)          the body streams back, body filters on the way

A policy is one module (or package) of `twistgate.policies` with the same
shape: its typed config section and parser, its validation, its stage, and
a `twistgate.policies.Policy` value that ties them together.  Adding one is
a new module plus one line in `POLICIES`.  A plugin marked ``tryfirst``
(``ip_allow``: network rules before authentication, so a denied address
gets 403 and never a challenge) runs before the policies, after
``tracing``; ``trylast`` after the other plugins.  docs/routing.md §8 is
the user-facing list (a test keeps it in step with `POLICIES`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, List, Mapping, Tuple

from twistgate.config.model import ConfigIssue, GatewayConfig, RouteConfig
from twistgate.http import FORWARDING_FIELDS
from twistgate.ops.tracing import TraceStage
from twistgate.policies import Policy, compression, concurrency, cors, server_header, tracing
from twistgate.policies.auth import policy as auth
from twistgate.policies.cache import invalidation, stage as cache
from twistgate.policies.ratelimit import stage as rate_limit
from twistgate.policies.transform import headers, request, response
from twistgate.upstream.balancer import ConsistentHash, Strategy

if TYPE_CHECKING:
    from twistgate.services import Services

__all__ = ["POLICIES", "blind", "build_policies", "forwarding_blind", "only_tracing", "outside", "route_sections", "validate"]

#: Every built-in policy, in the order requests pass them (responses: reverse).
POLICIES: Tuple[Policy, ...] = (
    tracing.POLICY,  # first: every later layer and plugin sees the trace
    compression.POLICY,  # outermost on the way out: encodes whatever leaves, cache hits included
    cors.POLICY,  # preflights answered before authentication (the Fetch rules)
    auth.IDENTITY_SCRUB,  # client copies of identity headers removed on routes without auth
    auth.AUTH,
    rate_limit.POLICY,  # after auth: limits may be per consumer
    concurrency.POLICY,  # requests in flight per key; a rate-limited request never takes a slot
    cache.POLICY,  # hits are authorised, limited and get CORS headers; never transformed twice
    invalidation.POLICY,  # unsafe methods on uncached routes still invalidate
    request.REWRITE,  # the path and query first: header templates may use them
    request.QUERY,
    headers.POLICY,
    server_header.POLICY,  # after headers: on the way out it runs first, so a route may still set its own
    response.SECURITY_HEADERS,  # fills in what the route's own header edits left missing
    response.JSON_ENVELOPE,
)


def route_sections() -> Mapping[str, object]:
    """``routes[]`` keys of the policies, and their parsers (for the config loader)."""
    return {policy.key: policy.parse for policy in POLICIES if policy.key is not None and policy.parse is not None}


def build_policies(route: RouteConfig, services: "Services") -> List[Tuple[str, object]]:
    """The route's stages, in running order, as ``(policy name, stage)``; once per route."""
    built: List[Tuple[str, object]] = []
    for policy in POLICIES:
        if policy.key is not None and not policy.every_route and policy.key not in route.policies:
            continue
        stage = policy.build(route, services)
        if stage is not None:
            built.append((policy.name, stage))
    return built


def only_tracing(stages: List[Tuple[str, object]], layers: Any) -> Any:
    """
    The `Tracer` when a route's only layer is trace propagation (`stages`:
    its `build_policies`; `layers`: its chain, plugins included), else None:
    the exchange then sends the trace on itself (`twistgate.generation.Route.trace`).
    """
    if len(stages) != 1 or not isinstance(stages[0][1], TraceStage):
        return None
    if layers.order("on_request") != [stages[0][0]] or layers.order("on_response") or layers.order("on_error"):
        return None  # a plugin of the route's own, or of the gateway's
    return stages[0][1].tracer


def outside(policy: Policy) -> Tuple[Policy, ...]:
    """The policies outside `policy`: before it on the way in, after it on the way out."""
    return POLICIES[: POLICIES.index(policy)]


def blind(route: RouteConfig, services: "Services", what: str, policies: Iterable[Policy] = POLICIES) -> bool:
    """
    Whether no layer of `route` among `policies` (every one by default)
    can look at `what`, a `Sight` field (``"forwarding"``,
    ``"response_fields"``), as each policy declares it for this route
    (`Policy.sight_on`; a policy that declares nothing looks at everything);
    and the route has no plugin, its own or the gateway's (a plugin may look
    at anything, and a ``trylast`` one runs after every stage).  Decided once
    per route, from its configuration.
    """
    if route.plugins or services.config.plugins:
        return False
    return not any(getattr(policy.sight_on(route, services), what) for policy in policies if policy.runs_on(route))


def _balancer_blind(balancer: Any) -> bool:
    """A built-in balancer not hashing on a forwarding field (a package's, `PluginBalancer`, sees the headers)."""
    if isinstance(balancer, ConsistentHash):
        key = balancer.key
        return key.source != "header" or key.name.lower().encode("ascii") not in FORWARDING_FIELDS
    return isinstance(balancer, Strategy)


def forwarding_blind(route: RouteConfig, services: "Services", balancers: Iterable[Any]) -> bool:
    """
    Whether nothing between the exchange and the upstream can read or edit
    the forwarding fields on the request: no layer of the route (`blind`),
    nor the `balancers` of its upstreams.  Then they go upstream as one
    prepared block (`twistgate.http.ForwardingPolicy.block`), never in
    ``request.headers``.
    """
    return all(_balancer_blind(balancer) for balancer in balancers) and blind(route, services, "forwarding")


def validate(config: GatewayConfig) -> List[ConfigIssue]:
    """What the policies find wrong across sections, without building anything."""
    issues: List[ConfigIssue] = []
    for route in config.routes:
        for policy in POLICIES:
            if policy.validate is not None and policy.key in route.policies:
                issues.extend(policy.validate(route, config))
    return issues
