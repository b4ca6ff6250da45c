"""
Invalidation after unsafe methods (RFC 9111 §4.4).

A successful (2xx/3xx) answer to a method that is not safe invalidates the
target URI and the same-origin `Location` / `Content-Location` targets.
The cache stage does this on its own routes; `Invalidation` does it on the
routes *without* a ``cache`` section that reach an upstream some cached
route uses, so a write through a separate route still retires what the
read route stored.
"""

from __future__ import annotations

from typing import Any, Optional

from twistgate.config.model import RouteConfig

from twistgate.policies.cache.keys import location_key, uri_key
from twistgate.policies.cache.rules import SAFE_METHODS
from twistgate.policies.cache.store import MemoryStore
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import NOT_FORWARDING, Policy


def invalidate_after(store: MemoryStore, upstream: str, request: ProxyRequest, response: ProxyResponse) -> None:
    if not 200 <= response.status < 400:
        return
    store.invalidate(uri_key(upstream, request))
    for name in (b"Location", b"Content-Location"):
        for value in response.headers.getRawHeaders(name) or ():
            key = location_key(value, request, upstream)
            if key is not None:
                store.invalidate(key)


class Invalidation:
    """The invalidating half of the cache, for a route that does not cache."""

    def __init__(self, store: MemoryStore, upstream: str) -> None:
        self.store = store
        self.upstream = upstream

    @hookimpl
    def on_response(self, request: ProxyRequest, response: Any) -> None:
        if request.method not in SAFE_METHODS and response.from_upstream:
            invalidate_after(self.store, self.upstream, request, response)


def _build(route: RouteConfig, services: Any) -> Optional[Invalidation]:
    """On routes without ``cache`` that reach an upstream a cached route uses."""
    if "cache" in route.policies:
        return None
    cached = {r.upstream for r in services.config.routes if "cache" in r.policies}
    if route.upstream not in cached:
        return None
    return Invalidation(services.cache.store, route.upstream)


#: Unsafe methods invalidate what the cache stored for their target, on every route.
#: (The method, scheme, host and path; the answer's ``Location``.)
POLICY = Policy(name="cache_invalidation", build=_build, sight=NOT_FORWARDING)
