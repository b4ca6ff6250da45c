"""
Resilience (issue #3): the upstream sections ``health_check``,
``outlier_detection``, ``circuit_breaker``, ``retry``, ``discovery`` and
``hash_key``, and the route sections ``retry`` and ``timeouts`` that
override an upstream's for one route.  The mechanisms live in
`twistgate.upstream`; `Upstream.start()` / `stop()` run their background
work with the generation.  See docs/resilience.md.
"""

from typing import Any

from twistgate.config.extensions import route_section, upstream_section
from twistgate.stages import service
from twistgate.upstream import settings
from twistgate.upstream.group import plugin_notifier

upstream_section("health_check")(settings.parse_health_check)
upstream_section("outlier_detection")(settings.parse_outlier_detection)
upstream_section("circuit_breaker")(settings.parse_circuit_breaker)
upstream_section("retry")(settings.parse_retry)
upstream_section("discovery")(settings.parse_discovery)
upstream_section("hash_key")(settings.parse_hash_key)

route_section("retry")(settings.parse_route_retry)
route_section("timeouts")(settings.parse_route_timeouts)


class ResilienceService:
    """
    Points every upstream's breaker notifications at the plugins of the
    generation that serves: its own upstreams when it is built, reused ones
    too when it starts (an upstream outlives a reload; its plugins do not).
    """

    def __init__(self) -> None:
        self.generation: Any = None

    def attach_generation(self, generation: Any) -> None:
        self.generation = generation
        borrowed = getattr(generation, "borrowed", set())
        for name, upstream in generation.upstreams.items():
            if name not in borrowed:
                upstream.notify = plugin_notifier(generation)

    def start(self) -> None:
        if self.generation is not None:
            for upstream in self.generation.upstreams.values():
                upstream.notify = plugin_notifier(self.generation)


@service("resilience", always=True)
def resilience_service(section: Any, context: Any) -> ResilienceService:
    return ResilienceService()
