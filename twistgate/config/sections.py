"""
Every configuration section beyond the core keys, in one explicit table per
level: top level, ``upstreams.<name>`` and ``routes[]``.

Each entry maps a key to its parser: a function from the section's `Node`
to its frozen, typed config, or None after recording issues on the node (a
parser never raises).  The parsed value lands in ``GatewayConfig.sections``,
``UpstreamConfig.policies`` or ``RouteConfig.policies`` under the key.  The
route keys of the policies come from `twistgate.chain.POLICIES`, so a new
policy is not registered twice.  The tables are built on first use: the
parsers live with their features, which import this package's model.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Dict, Mapping, Optional

from twistgate.config._node import Node

SectionParser = Callable[[Node], Optional[Any]]

__all__ = ["gateway_sections", "read", "route_sections", "upstream_sections"]


@lru_cache(maxsize=None)
def gateway_sections() -> Mapping[str, SectionParser]:
    from twistgate.ops import settings
    from twistgate.policies.auth.parse import parse_auth_section
    from twistgate.policies.cache.config import parse_gateway as parse_cache_store
    from twistgate.policies.compression import parse_compression
    from twistgate.plugins.store_config import parse_plugin_store
    from twistgate.policies.ratelimit.config import parse_rate_limiting
    from twistgate.workers.settings import parse_workers
    from twistgate.websocket.config import parse_gateway as parse_websocket

    return {
        "admin": settings.parse_admin,
        "access_log": settings.parse_access_log,
        "tracing": settings.parse_tracing,
        "reload": settings.parse_reload,
        "auth": parse_auth_section,
        "rate_limiting": parse_rate_limiting,
        "plugin_store": parse_plugin_store,
        "cache": parse_cache_store,
        "compression": parse_compression,  # the default of every route without its own
        "workers": parse_workers,
        "websocket": parse_websocket,  # every route's default, the gateway's cap, drain after a reload
    }


@lru_cache(maxsize=None)
def upstream_sections() -> Mapping[str, SectionParser]:
    from twistgate.upstream import settings
    from twistgate.upstream.tls import parse_upstream_tls

    return {
        "health_check": settings.parse_health_check,
        "outlier_detection": settings.parse_outlier_detection,
        "circuit_breaker": settings.parse_circuit_breaker,
        "retry": settings.parse_retry,
        "discovery": settings.parse_discovery,
        "hash_key": settings.parse_hash_key,
        "tls": parse_upstream_tls,
    }


@lru_cache(maxsize=None)
def route_sections() -> Mapping[str, SectionParser]:
    from twistgate import chain
    from twistgate.upstream import settings
    from twistgate.websocket.config import parse_route as parse_websocket_route

    sections: Dict[str, SectionParser] = dict(chain.route_sections())  # type: ignore[arg-type]
    sections["retry"] = settings.parse_route_retry  # the upstream's retry, overridden for one route
    sections["timeouts"] = settings.parse_route_timeouts
    sections["websocket"] = parse_websocket_route  # twistgate.websocket
    return sections


def read(fields: Any, table: Mapping[str, SectionParser]) -> Dict[str, Any]:
    """The parsed sections of `table` present in `fields` (a `Fields`), by key."""
    found: Dict[str, Any] = {}
    for key, parse in table.items():
        if key in fields and not fields[key].is_null():
            value = parse(fields[key])
            if value is not None:
                found[key] = value
    return found
