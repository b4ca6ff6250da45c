"""
A shared HTTP response cache (RFC 9111) for twistgate routes.

`stage.CacheStage` is the per-route policy, `service.CacheService` the
gateway-wide store it shares; the other modules are the rules they apply:
directive and date parsing, freshness, keys and Vary, storability,
conditional and range answers, collapsing, and the byte-bounded LRU store.
See docs/caching.md.
"""

from twistgate.policies.cache.config import CacheStoreConfig, RouteCacheConfig
from twistgate.policies.cache.service import CacheService
from twistgate.policies.cache.stage import CacheStage, NotCached
from twistgate.policies.cache.store import MemoryStore

__all__ = ["CacheService", "CacheStage", "CacheStoreConfig", "MemoryStore", "NotCached", "RouteCacheConfig"]
