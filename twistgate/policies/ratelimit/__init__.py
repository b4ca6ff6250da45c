"""
Rate limiting: token bucket, fixed window and sliding window limits per
route, kept in this process (``memory``) or shared by every gateway process
through Redis (``redis://``).  See docs/traffic.md.

* `algorithms`: the arithmetic (pure functions over small states);
* `script`: the same arithmetic in Lua, run atomically by Redis;
* `memory`, `redis_backend`: the two backends, one ``decide`` each;
* `config`: the ``rate_limiting`` and ``rate_limit`` sections;
* `headers`, `stage`: the per-route stage and its response headers.
"""

from __future__ import annotations

from typing import Any, Optional

from twistgate.policies.ratelimit.algorithms import Decision, Limit, Outcome
from twistgate.policies.ratelimit.config import RateLimitConfig, RateLimitingConfig
from twistgate.policies.ratelimit.memory import MemoryBackend
from twistgate.policies.ratelimit.stage import RateLimitStage

__all__ = [
    "Decision",
    "Limit",
    "MemoryBackend",
    "Outcome",
    "RateLimitConfig",
    "RateLimitStage",
    "RateLimitingConfig",
    "build_backend",
]


def build_backend(config: Optional[RateLimitingConfig], clock: Any) -> Any:
    """The backend a ``rate_limiting`` section asks for (memory when absent)."""
    config = config if config is not None else RateLimitingConfig()
    if config.redis is None:
        return MemoryBackend(clock, max_keys=config.max_keys)
    from twistgate.policies.ratelimit.redis_backend import RedisBackend

    address = config.redis
    return RedisBackend(
        clock,
        host=address.host,
        port=address.port,
        db=address.db,
        username=address.username,
        password=address.password,
        timeout=config.timeout,
    )
