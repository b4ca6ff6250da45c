"""
The top-level ``plugin_store`` section: where plugins' ``context.store``
keeps its keys, and building that backend.

```yaml
plugin_store:
  backend: redis://127.0.0.1:6379/0   # or memory
  timeout: 100ms                      # Redis: a reply, or the connection, within this
  key_prefix: "twistgate:plugins:"    # Redis
  max_keys: 100000                    # memory
```

Without the section the store is on the rate limiter's backend
(``rate_limiting.backend``, its timeout too): one Redis for all the
gateway's shared state, or memory.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from twistgate.config._node import Node
from twistgate.config.model import Location
from twistgate.plugins.store import MemoryStore
from twistgate.policies.ratelimit.config import RateLimitingConfig, RedisAddress, read_backend

__all__ = ["PluginStoreConfig", "build_store_backend", "parse_plugin_store"]

KEYS = ("backend", "timeout", "key_prefix", "max_keys")


@attrs.frozen(kw_only=True)
class PluginStoreConfig:
    """The ``plugin_store`` section."""

    redis: Optional[RedisAddress] = None  # None: memory
    timeout: float = 0.1
    key_prefix: str = "twistgate:plugins:"
    max_keys: int = 100_000
    location: Location = Location()


def parse_plugin_store(node: Node) -> Optional[PluginStoreConfig]:
    fields = node.mapping(KEYS)
    if fields is None:
        return None
    ok, redis = read_backend(fields)
    timeout = fields.read("timeout", Node.duration, 0.1)
    key_prefix = fields.read("key_prefix", Node.string, "twistgate:plugins:")
    max_keys = fields.read("max_keys", lambda n: n.integer(min=1), 100_000)
    for key, applies in (("timeout", redis), ("key_prefix", redis), ("max_keys", redis is None)):
        if key in fields and not applies and ok:
            backend = "redis" if key != "max_keys" else "memory"
            fields[key].issue(f"{key} applies to the {backend} backend only", at_key=True)
            ok = False
    if not ok or timeout is None or key_prefix is None or max_keys is None:
        return None
    return PluginStoreConfig(
        redis=redis, timeout=timeout, key_prefix=key_prefix, max_keys=max_keys, location=node.location(at_key=True)
    )


def effective(section: Optional[PluginStoreConfig], rate_limiting: Optional[RateLimitingConfig]) -> PluginStoreConfig:
    """The section, or without one, the rate limiter's backend."""
    if section is not None:
        return section
    if rate_limiting is not None and rate_limiting.redis is not None:
        return PluginStoreConfig(redis=rate_limiting.redis, timeout=rate_limiting.timeout)
    return PluginStoreConfig()


def build_store_backend(config: PluginStoreConfig, clock: Any, memory: Optional[MemoryStore]) -> Any:
    """
    The backend `config` asks for: `memory` (the gateway's own, which
    outlives generations) when it is in memory, else a new `RedisStore`
    (started and stopped with the generation).
    """
    if config.redis is None:
        store = memory if memory is not None else MemoryStore(clock)
        store.max_keys = config.max_keys
        return store
    from twistgate.plugins.redis_store import RedisStore

    address = config.redis
    return RedisStore(
        clock, host=address.host, port=address.port, db=address.db, username=address.username,
        password=address.password, timeout=config.timeout, key_prefix=config.key_prefix,
    )  # fmt: skip
