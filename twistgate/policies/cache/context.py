"""
What the cache stage knows about one request between its hooks
(``on_request``, ``on_response``, ``on_error``), kept in the request's
state under `twistgate.policies.cache.service.CONTEXT`.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from twistgate.policies.cache.directives import NO_REQUEST_DIRECTIVES, RequestDirectives
from twistgate.policies.cache.entry import Entry
from twistgate.policies.cache.keys import UriKey, VariantKey

__all__ = ["CacheContext"]


class CacheContext:
    """What the stage knows about one request between its hooks."""

    __slots__ = (
        "mode",
        "key",
        "extra",
        "variant",
        "directives",
        "lease",
        "stale",
        "fwd",
        "request_time",
        "revalidating",
        "client_conditionals",
        "served",
        "authorized",
        "fields",
    )

    def __init__(self, mode: str, directives: RequestDirectives = NO_REQUEST_DIRECTIVES) -> None:
        self.mode = mode  # "cache", "bypass" or "invalidate"
        self.key: Optional[UriKey] = None
        self.extra: Tuple[Optional[str], ...] = ()
        self.variant: VariantKey = ()
        self.directives = directives
        self.lease: Any = None
        self.stale: Optional[Entry] = None
        self.fwd = "bypass"
        self.request_time = 0.0
        self.revalidating = False
        self.client_conditionals: Optional[Tuple[Any, Any]] = None
        self.served = False
        self.authorized = False  # RFC 9111 §3.5: Authorization, or a consumer the gateway authenticated
        self.fields: Any = None
