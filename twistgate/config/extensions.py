"""
Extension sections: configuration that a feature module owns.

A feature (authentication, rate limiting, health checks...) registers a
parser for its key at one of three levels; the loader then accepts that key
(it is no longer "not implemented yet"), parses it with the feature's own
parser and stores the typed result in ``GatewayConfig.sections``,
``UpstreamConfig.policies`` or ``RouteConfig.policies`` under the key.

    from twistgate.config.extensions import route_section

    @route_section("rate_limit")
    def parse_rate_limit(node: Node) -> Optional[RateLimitConfig]:
        fields = node.mapping(("rate", "burst", "key", "algorithm"), required=("rate",))
        ...

A parser records problems on the node (``node.issue(...)``) and returns None
for an invalid section; it never raises.  Cross-references between sections
(a route naming an authenticator) are checked where the feature is built,
with the section's location.  Feature modules are imported from
the package `twistgate.features` when a config is loaded, so each feature
registers itself without editing the loader.  The same modules register their stages and
services (twistgate.stages).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Dict, Optional

from twistgate.config._node import Node

SectionParser = Callable[[Node], Optional[Any]]

GATEWAY_SECTIONS: Dict[str, SectionParser] = {}
UPSTREAM_SECTIONS: Dict[str, SectionParser] = {}
ROUTE_SECTIONS: Dict[str, SectionParser] = {}

#: The package whose modules register features (sections here, stages and
#: services in twistgate.stages); all are imported once, on the first load.
FEATURE_PACKAGE = "twistgate.features"

_loaded = False


def _register(table: Dict[str, SectionParser], key: str) -> Callable[[SectionParser], SectionParser]:
    def decorate(parse: SectionParser) -> SectionParser:
        table[key] = parse
        return parse

    return decorate


def gateway_section(key: str) -> Callable[[SectionParser], SectionParser]:
    """Register the parser of a top-level key (``admin``, ``auth``...)."""
    return _register(GATEWAY_SECTIONS, key)


def upstream_section(key: str) -> Callable[[SectionParser], SectionParser]:
    """Register the parser of a key under ``upstreams.<name>``."""
    return _register(UPSTREAM_SECTIONS, key)


def route_section(key: str) -> Callable[[SectionParser], SectionParser]:
    """Register the parser of a key under ``routes[]``."""
    return _register(ROUTE_SECTIONS, key)


def load_extensions() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        package = importlib.import_module(FEATURE_PACKAGE)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            importlib.import_module(f"{FEATURE_PACKAGE}.{info.name}")


def read(fields: Any, table: Dict[str, SectionParser]) -> Dict[str, Any]:
    """The parsed extension sections present in `fields` (a `Fields`), by key."""
    found: Dict[str, Any] = {}
    for key, parse in table.items():
        if key in fields and not fields[key].is_null():
            value = parse(fields[key])
            if value is not None:
                found[key] = value
    return found
