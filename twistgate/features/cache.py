"""
Registers the HTTP cache (``routes[].cache``, top-level ``cache``) and
response compression (``routes[].compression``, top-level ``compression``
as the default for every route); see docs/caching.md.
"""

from __future__ import annotations

from typing import Any, Optional

from twistgate.policies.cache.config import CacheStoreConfig, RouteCacheConfig, parse_gateway, parse_route
from twistgate.policies.cache.invalidation import Invalidation
from twistgate.policies.cache.service import CacheService
from twistgate.policies.cache.stage import CacheStage
from twistgate.policies.compression import CompressionConfig, CompressionStage, parse_compression
from twistgate.config.extensions import gateway_section, route_section
from twistgate.config.model import ConfigError, ConfigIssue, RouteConfig
from twistgate.stages import ORDER_CACHE, ORDER_COMPRESSION, BuildContext, global_stage, service, stage

route_section("cache")(parse_route)
gateway_section("cache")(parse_gateway)
route_section("compression")(parse_compression)


@service("cache", always=True)
def make_cache_service(config: Optional[CacheStoreConfig], context: BuildContext) -> CacheService:
    built = CacheService(config)
    if any("cache" in route.policies for route in context.config.routes):
        # Only then: an observer makes every request build its record.
        context.observers.append(built.observe)
    return built


@stage("cache", order=ORDER_CACHE)
def make_cache_stage(config: RouteCacheConfig, route: RouteConfig, context: BuildContext) -> Any:
    shared: CacheService = context.services["cache"]
    if config.max_object_size > shared.store.max_bytes:
        message = (
            f"max_object_size ({config.max_object_size} bytes) is larger than the cache's "
            f"max_memory ({shared.store.max_bytes} bytes): such responses could never be stored"
        )
        raise ConfigError([ConfigIssue(location=config.location, message=message)])
    return CacheStage(config, route.upstream, shared, context.clock)


@stage("compression", order=ORDER_COMPRESSION)
def make_compression_stage(config: CompressionConfig, route: RouteConfig, context: BuildContext) -> Any:
    return CompressionStage(config) if config.enabled else None


def make_invalidation(section: Any, route: RouteConfig, context: BuildContext) -> Any:
    """On routes without ``cache`` that reach an upstream a cached route uses."""
    if "cache" in route.policies:
        return None
    cached = {r.upstream for r in context.config.routes if "cache" in r.policies}
    if route.upstream not in cached:
        return None
    return Invalidation(context.services["cache"].store, route.upstream)


def make_default_compression(section: Optional[CompressionConfig], route: RouteConfig, context: BuildContext) -> Any:
    """The top-level ``compression`` section, for routes that have none of their own."""
    if section is None or not section.enabled or "compression" in route.policies:
        return None
    return CompressionStage(section)


# Unsafe methods invalidate cached entries on every route; a top-level
# `compression` section applies to every route without its own.
global_stage("cache_invalidation", order=ORDER_CACHE)(make_invalidation)
global_stage("compression", order=ORDER_COMPRESSION)(make_default_compression)
gateway_section("compression")(parse_compression)
