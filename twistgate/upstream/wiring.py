"""
Building an upstream's three extension objects from its configuration: the
balancer (``balance``), the health check (``health_check.type``) and the
target source (``targets_from``).  Built-in or third-party, each comes from
its `ExtensionChoice` through the same factory call; a built-in is then
used through the gateway's internal interface (`pick`, `probe`, `fetch`),
anything else through the isolating adapters of `twistgate.upstream.external`.
"""

from __future__ import annotations

from random import Random
from typing import Any, Callable, List, Optional, Tuple

from twistgate.config.model import UpstreamConfig
from twistgate.plugins.extension_points import (
    BALANCERS,
    DISCOVERY,
    HEALTH_CHECKS,
    ExtensionChoice,
    ExtensionContext,
    builtin_choice,
)
from twistgate.plugins.isolation import Label
from twistgate.upstream.discovery import Resolved
from twistgate.upstream.external import PluginBalancer, PluginDiscovery, PluginHealthCheck
from twistgate.upstream.health import HealthChecker
from twistgate.upstream.settings import HealthCheckConfig
from twistgate.upstream.targets_from import DiscoverySupport, TargetsFromConfig, TargetsFromLoop

__all__ = ["build_balancer", "build_health", "build_targets_from"]


def build_balancer(config: UpstreamConfig, clock: Any, rng: Random) -> Tuple[Any, Callable[..., Any]]:
    """
    The strategy object and its pick function: ``pick(candidates, request)``
    returns a target, or (third-party) a Deferred of one.
    """
    choice: Optional[ExtensionChoice] = config.policies.get("balance")
    if choice is None:
        choice = builtin_choice(BALANCERS, config.balance)
    hash_key = config.policies.get("hash_key")
    if hash_key is not None and choice.name == "consistent_hash" and "key" not in choice.options:
        choice = ExtensionChoice(extension=choice.extension, options={**choice.options, "key": hash_key}, location=choice.location)
    owner = f"upstreams.{config.name}"
    made = choice.create(ExtensionContext(name=choice.name, owner=owner, clock=clock, rng=rng))
    if choice.extension.builtin and hasattr(made, "pick"):
        return made, made.pick
    balancer = PluginBalancer(made, Label(BALANCERS, choice.name, "choose", owner), clock)
    return balancer, balancer.select


def build_health(
    config: HealthCheckConfig,
    upstream: str,
    clock: Any,
    rng: Random,
    send: Callable[..., Any],
    http_client: Any,
    on_change: Callable[[Any], None],
) -> HealthChecker:
    """The upstream's `HealthChecker`, probing with the configured check."""
    choice = config.check
    if choice is None:  # a config made in code: the http check on `path`
        http = builtin_choice(HEALTH_CHECKS, "http")
        choice = ExtensionChoice(
            extension=http.extension, options={"path": config.path, "expected_statuses": config.expected_statuses}
        )
    owner = f"upstreams.{upstream}.health_check"
    context = ExtensionContext(
        name=choice.name, owner=owner, clock=clock, rng=rng, http_client=http_client, internal=send
    )
    made = choice.create(context)
    if choice.extension.builtin and hasattr(made, "probe"):
        probe, verdict = made.probe, made.verdict
    else:
        adapter = PluginHealthCheck(made, Label(HEALTH_CHECKS, choice.name, "check", owner), clock, config.timeout)
        probe, verdict = adapter.probe, adapter.verdict
    return HealthChecker(config, clock, probe, on_change, rng, upstream, verdict=verdict)


def build_targets_from(
    config: TargetsFromConfig,
    upstream: str,
    clock: Any,
    rng: Random,
    http_client: Any,
    resolver: Any,
    on_update: Callable[[List[Resolved]], None],
) -> TargetsFromLoop:
    """The loop that keeps the upstream's targets as its source lists them."""
    choice = config.source
    owner = f"upstreams.{upstream}.targets_from"
    context = ExtensionContext(
        name=choice.name,
        owner=owner,
        clock=clock,
        rng=rng,
        http_client=http_client,
        internal=DiscoverySupport(config.interval, config.timeout, resolver),
    )
    made = choice.create(context)
    if choice.extension.builtin and hasattr(made, "fetch"):
        source = made
    else:
        source = PluginDiscovery(made, Label(DISCOVERY, choice.name, "targets", owner), clock, config.timeout)
    return TargetsFromLoop(source, clock, config.interval, on_update, upstream, choice.name)
