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

from typing import Any

from twistgate.policies.cache.keys import location_key, uri_key
from twistgate.policies.cache.rules import SAFE_METHODS
from twistgate.policies.cache.store import MemoryStore
from twistgate.exchange import ProxyRequest, ProxyResponse
from twistgate.plugins import hookimpl


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
