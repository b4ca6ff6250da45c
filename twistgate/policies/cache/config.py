"""
The cache's configuration: the route section ``cache:`` and the top-level
``cache:`` section (the shared store), parsed once into frozen values.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import attrs

from twistgate.config._node import Node
from twistgate.config.model import Location, MiB

ROUTE_KEYS = (
    "ttl",
    "methods",
    "max_object_size",
    "max_variants",
    "stale_while_revalidate",
    "stale_if_error",
    "collapse",
    "collapse_timeout",
    "client_directives",
    "key_headers",
    "key_consumer",
)
GATEWAY_KEYS = ("max_memory", "status_name", "targeted_field", "cdn_cache_control")
DEFAULT_TARGETED_FIELD = "Twistgate-Cache-Control"
CACHEABLE_METHODS = ("GET", "HEAD")
_STATUS_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


@attrs.frozen(kw_only=True)
class RouteCacheConfig:
    """``routes[].cache``."""

    ttl: Optional[float] = None  # default lifetime for cacheable responses without explicit freshness
    # ``ttl: {200: 60s, 404: 10s}``: the default lifetime per status; a listed
    # status is stored without explicit freshness even when the RFC's
    # heuristic would not allow it (nginx's proxy_cache_valid), others are not.
    ttl_by_status: Tuple[Tuple[int, float], ...] = ()
    methods: Tuple[bytes, ...] = (b"GET", b"HEAD")
    max_object_size: int = 1 * MiB
    max_variants: int = 16
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    collapse: bool = True
    collapse_timeout: float = 5.0  # how long a miss waits for another's fetch before going itself
    client_directives: bool = True
    key_headers: Tuple[bytes, ...] = ()
    key_consumer: bool = False
    location: Location = attrs.field(default=Location(), eq=False)

    def ttl_for(self, status: int) -> Optional[float]:
        """The default lifetime of a response with this status (None: only its own headers give one)."""
        if self.ttl_by_status:
            return dict(self.ttl_by_status).get(status)
        return self.ttl

    def lists(self, status: int) -> bool:
        """Whether ``ttl`` names this status (it is then storable like a heuristically cacheable one)."""
        return any(code == status for code, _ in self.ttl_by_status)


@attrs.frozen(kw_only=True)
class CacheStoreConfig:
    """Top-level ``cache``: the store every route shares."""

    max_memory: int = 64 * MiB
    status_name: str = "twistgate"  # the cache's name in Cache-Status
    # RFC 9213 targeted fields, above Cache-Control: one addressed to this
    # gateway alone (removed before the response goes on; None = none), then
    # CDN-Cache-Control (passed on).
    targeted_field: Optional[str] = DEFAULT_TARGETED_FIELD
    cdn_cache_control: bool = True
    location: Location = attrs.field(default=Location(), eq=False)

    @property
    def targets(self) -> Tuple[bytes, ...]:
        """The target list, lower-case, most specific first."""
        names = [self.targeted_field] if self.targeted_field else []
        if self.cdn_cache_control:
            names.append("CDN-Cache-Control")
        return tuple(dict.fromkeys(name.lower().encode("ascii") for name in names))

    @property
    def private_fields(self) -> Tuple[bytes, ...]:
        """Targeted fields addressed to this gateway only: never passed on."""
        own = self.targeted_field.lower().encode("ascii") if self.targeted_field else None
        return (own,) if own and own != b"cdn-cache-control" else ()


def parse_route(node: Node) -> Optional[RouteCacheConfig]:
    fields = node.mapping(ROUTE_KEYS)
    if fields is None:
        return None
    defaults = RouteCacheConfig()
    ttl = fields["ttl"] if "ttl" in fields else None
    by_status = fields.read("ttl", _ttl_by_status, ()) if ttl is not None and ttl.kind == "mapping" else ()
    return RouteCacheConfig(
        ttl=fields.read("ttl", Node.duration, None) if ttl is not None and ttl.kind != "mapping" else None,
        ttl_by_status=by_status,
        methods=fields.read("methods", _methods, defaults.methods),
        max_object_size=fields.read("max_object_size", lambda n: n.size(min=1), defaults.max_object_size),
        max_variants=fields.read("max_variants", lambda n: n.integer(min=1), defaults.max_variants),
        stale_while_revalidate=fields.read("stale_while_revalidate", _window, 0.0),
        stale_if_error=fields.read("stale_if_error", _window, 0.0),
        collapse=fields.read("collapse", Node.boolean, True),
        collapse_timeout=fields.read("collapse_timeout", Node.duration, defaults.collapse_timeout),
        client_directives=fields.read("client_directives", Node.boolean, True),
        key_headers=fields.read("key_headers", _header_names, ()),
        key_consumer=fields.read("key_consumer", Node.boolean, False),
        location=node.location(at_key=True),
    )


def parse_gateway(node: Node) -> Optional[CacheStoreConfig]:
    fields = node.mapping(GATEWAY_KEYS)
    if fields is None:
        return None
    defaults = CacheStoreConfig()
    return CacheStoreConfig(
        max_memory=fields.read("max_memory", lambda n: n.size(min=1), defaults.max_memory),
        status_name=fields.read("status_name", _status_name, defaults.status_name),
        targeted_field=fields.read("targeted_field", _targeted_field, defaults.targeted_field) or None,
        cdn_cache_control=fields.read("cdn_cache_control", Node.boolean, True),
        location=node.location(at_key=True),
    )


def _targeted_field(node: Node) -> Optional[str]:
    """A header field name, or false for none (returned as "")."""
    if node.kind == "boolean":
        if node.boolean():
            node.issue(f"write a field name like {DEFAULT_TARGETED_FIELD}, or false for none")
            return None
        return ""
    names = _header_names_of([node])
    return names[0].decode("ascii") if names else None
def _ttl_by_status(node: Node) -> Optional[Tuple[Tuple[int, float], ...]]:
    """``{200: 60s, 404: 10s}``: a status from 200 to 599 (never 206 or 304) to a duration."""
    found = []
    count = len(node.issues.found)
    for key, value in node.entries() or ():
        try:
            status = int(key)
        except ValueError:
            value.issue(f"expected a status code like 200 as the key, got {key!r}", at_key=True)
            continue
        if not 200 <= status <= 599 or status in (206, 304):
            value.issue(f"{status} responses are never stored (use a final status from 200 to 599, not 206 or 304)", at_key=True)
            continue
        seconds = value.duration(positive=False)
        if seconds is not None:
            found.append((status, seconds))
    if not found:
        if len(node.issues.found) == count:
            node.issue("name at least one status, like {200: 60s, 404: 10s}")
        return None
    return tuple(found)


def _window(node: Node) -> Optional[float]:
    return node.duration(positive=False)


def _methods(node: Node) -> Optional[Tuple[bytes, ...]]:
    items = node.sequence(non_empty=True)
    if items is None:
        return None
    methods = []
    for item in items:
        name = item.string()
        if name is None:
            continue
        if name.upper() not in CACHEABLE_METHODS:
            item.issue(f"only GET and HEAD responses are cached, got {name!r}")
            continue
        methods.append(name.upper().encode("ascii"))
    return tuple(dict.fromkeys(methods))


def _header_names(node: Node) -> Optional[Tuple[bytes, ...]]:
    items = node.sequence()
    if items is None:
        return None
    return _header_names_of(items)


def _header_names_of(items: List[Node]) -> Tuple[bytes, ...]:
    names = []
    for item in items:
        name = item.string()
        if name is None:
            continue
        if not all(c.isalnum() or c in "!#$%&'*+.^_`|~-" for c in name):
            item.issue(f"{name!r} is not a header field name")
            continue
        names.append(name.encode("ascii"))
    return tuple(names)


def _status_name(node: Node) -> Optional[str]:
    name = node.string()
    if name is not None and not (set(name) <= _STATUS_NAME_CHARS and name[:1].isalpha()):
        node.issue(f"{name!r} is not a valid Cache-Status name (a letter, then letters, digits, '-', '.', '_')")
        return None
    return name
