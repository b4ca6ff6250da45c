"""
The in-memory store: entries under primary keys and variants, bounded in
bytes, evicting the least recently used entry first.

Every entry's `size` (body, stored fields and a fixed overhead) counts
against `max_bytes`; `put` evicts until the new entry fits, so the total
never exceeds the bound.  A primary key holds one `Vary` field list (the
latest response's) and up to `max_variants` variants.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

from twistgate.policies.cache.entry import Entry
from twistgate.policies.cache.keys import UriKey, VariantKey, variant_key


class _Resource:
    __slots__ = ("vary", "variants")

    def __init__(self, vary: Tuple[str, ...]) -> None:
        self.vary = vary
        self.variants: Dict[VariantKey, Entry] = {}


class MemoryStore:
    """A byte-bounded LRU of `Entry` objects."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._resources: Dict[UriKey, _Resource] = {}
        self._lru: "OrderedDict[Tuple[UriKey, VariantKey], Entry]" = OrderedDict()
        self._tick = 0

    def __len__(self) -> int:
        return len(self._lru)

    def lookup(self, key: UriKey, headers: Any, extra: Tuple[Optional[str], ...]) -> Tuple[bool, Optional[Entry], VariantKey]:
        """(whether the URI is known, the matching variant or None, the request's variant key)."""
        resource = self._resources.get(key)
        if resource is None:
            return False, None, ()
        variant = variant_key(headers, resource.vary, extra)
        entry = resource.variants.get(variant)
        if entry is not None:
            self._lru.move_to_end((key, variant))
            self._tick += 1
            entry.last_used = self._tick
        return True, entry, variant

    def put(self, key: UriKey, variant: VariantKey, entry: Entry, max_variants: int) -> bool:
        """Store `entry` (replacing that variant); False if it can never fit."""
        if entry.size > self.max_bytes:
            return False
        resource = self._resources.get(key)
        if resource is not None and resource.vary != entry.vary:
            self.invalidate(key)  # the resource now varies on other fields
            resource = None
        if resource is None:
            resource = self._resources[key] = _Resource(entry.vary)
        old = resource.variants.get(variant)
        if old is not None:
            self._drop(key, variant)
        elif len(resource.variants) >= max_variants:
            oldest = min(resource.variants, key=lambda v: resource.variants[v].last_used)
            self._drop(key, oldest)
            self.evictions += 1
        while self.bytes + entry.size > self.max_bytes and self._lru:
            (old_key, old_variant), _ = next(iter(self._lru.items()))
            self._drop(old_key, old_variant)
            self.evictions += 1
        resource = self._resources.get(key)
        if resource is None:  # evicted its last variant to make room
            resource = self._resources[key] = _Resource(entry.vary)
        resource.variants[variant] = entry
        self._lru[(key, variant)] = entry
        self._tick += 1
        entry.last_used = self._tick
        self.bytes += entry.size
        return True

    def remove(self, key: UriKey, variant: VariantKey, entry: Entry) -> None:
        """Drop one variant, if it is still `entry` (an unusable, expired one)."""
        resource = self._resources.get(key)
        if resource is not None and resource.variants.get(variant) is entry:
            self._drop(key, variant)

    def invalidate(self, key: UriKey) -> int:
        """Drop every variant of a URI (RFC 9111 §4.4); how many were dropped."""
        resource = self._resources.get(key)
        if resource is None:
            return 0
        variants = list(resource.variants)
        for variant in variants:
            self._drop(key, variant)
        self._resources.pop(key, None)
        return len(variants)

    def _drop(self, key: UriKey, variant: VariantKey) -> None:
        resource = self._resources[key]
        entry = resource.variants.pop(variant)
        del self._lru[(key, variant)]
        self.bytes -= entry.size
        if not resource.variants:
            del self._resources[key]
