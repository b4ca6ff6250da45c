"""
The gateway-wide part of the cache: one store and one table of fetches in
flight shared by every route (built once per generation), counters for the
admin API, and the exchange observer that releases a collapse lease when
its leader's exchange ends in a way no hook saw (the client left while the
request was still upstream).
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, Optional, Set

from twistgate.policies.cache.collapse import Leases
from twistgate.policies.cache.config import CacheStoreConfig
from twistgate.policies.cache.store import MemoryStore

#: The key of the stage's per-request context in ``request.state``.
CONTEXT = "cache.context"


class CacheService:
    def __init__(self, config: Optional[CacheStoreConfig] = None) -> None:
        config = config or CacheStoreConfig()
        self.config = config
        self.store = MemoryStore(config.max_memory)
        self.leases = Leases()
        self.status_name = config.status_name.encode("ascii")
        self.targets = config.targets  # RFC 9213 target list (twistgate.policies.cache.targeted)
        self.private_fields = config.private_fields
        self.refreshing: Set[Hashable] = set()
        self.outcomes: Dict[str, int] = {}

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def observe(self, record: Any) -> None:
        """An exchange ended: its lease (if it led a fetch) is released."""
        context = record.state.get(CONTEXT) if record.state else None
        lease = getattr(context, "lease", None)
        if lease is not None:
            lease.release()

    def stats(self) -> Dict[str, Any]:
        """Counts for the admin API and dashboards."""
        hits = self.outcomes.get("hit", 0)
        lookups = hits + self.outcomes.get("miss", 0) + self.outcomes.get("stale", 0) + self.outcomes.get("revalidated", 0)
        return {
            "entries": len(self.store),
            "bytes": self.store.bytes,
            "max_bytes": self.store.max_bytes,
            "evictions": self.store.evictions,
            "in_flight": len(self.leases),
            "outcomes": dict(self.outcomes),
            "hit_ratio": hits / lookups if lookups else 0.0,
        }
