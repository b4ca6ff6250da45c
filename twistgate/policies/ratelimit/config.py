"""
The rate-limit configuration: the top-level ``rate_limiting`` section (which
backend) and the route's ``rate_limit`` (which limits), parsed once into
frozen values.  Every problem is recorded on the node (file, line, key path).
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple
from urllib.parse import unquote, urlsplit

import attrs

from twistgate.config._issues import suggest
from twistgate.config._node import Fields, Node
from twistgate.config.model import Location, Rate
from twistgate.policies.ratelimit.algorithms import ALGORITHMS, MICROS, TOKEN_BUCKET, Limit
from twistgate.request_keys import read_key_part

BACKEND_KEYS = ("backend", "on_backend_error", "timeout", "max_keys", "key_prefix")
LIMIT_KEYS = ("rate", "burst", "key", "algorithm", "name")
ON_BACKEND_ERROR = ("allow", "deny")

# Quota policy names go into an sf-string: printable ASCII without '"' or '\'.
_POLICY_NAME = re.compile(r"[ !#-\[\]-~]{1,64}")


@attrs.frozen(kw_only=True)
class RedisAddress:
    host: str
    port: int = 6379
    db: int = 0
    username: Optional[str] = None
    password: Optional[str] = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class RateLimitingConfig:
    """The top-level ``rate_limiting`` section."""

    redis: Optional[RedisAddress] = None  # None = the memory backend
    on_backend_error: str = "allow"
    timeout: float = 0.1
    max_keys: int = 100_000
    key_prefix: str = "twistgate:rl:"
    location: Location = Location()


@attrs.frozen(kw_only=True)
class LimitConfig:
    """One limit of a route: ``rate_limit: {rate, burst, key, algorithm, name}``."""

    rate: Rate
    algorithm: str = "token_bucket"
    burst: Optional[int] = None
    key: Tuple[str, ...] = ("ip",)  # parts: ip | consumer | route | header:<Name>
    name: Optional[str] = None
    location: Location = Location()

    def limit(self) -> Limit:
        """The backend's view, in microseconds."""
        count = self.rate.count
        burst = self.burst if self.burst is not None else count
        return Limit(ALGORITHMS[self.algorithm], count, int(round(self.rate.per * MICROS)), burst)

    def policy_name(self) -> str:
        if self.name is not None:
            return self.name
        per = self.rate.per
        period = f"{int(per)}s" if per == int(per) else f"{per:g}s"
        return f"{self.rate.count}-per-{period}"


@attrs.frozen(kw_only=True)
class RateLimitConfig:
    """A route's ``rate_limit``: one limit or several, all checked per request."""

    limits: Tuple[LimitConfig, ...]
    location: Location = Location()


# -- rate_limiting ----------------------------------------------------------


def parse_rate_limiting(node: Node) -> Optional[RateLimitingConfig]:
    fields = node.mapping(BACKEND_KEYS)
    if fields is None:
        return None
    ok, redis = read_backend(fields)
    on_error = fields.read("on_backend_error", lambda n: n.choice(ON_BACKEND_ERROR), "allow")
    timeout = fields.read("timeout", Node.duration, 0.1)
    max_keys = fields.read("max_keys", lambda n: n.integer(min=1), 100_000)
    prefix = fields.read("key_prefix", Node.string, "twistgate:rl:")
    if "max_keys" in fields and redis is not None:
        fields["max_keys"].issue("max_keys applies to the memory backend only", at_key=True)
        ok = False
    if ok and redis is None:
        for key in ("timeout", "key_prefix"):
            if key in fields:
                fields[key].issue(f"{key} applies to the redis backend only", at_key=True)
                ok = False
    if not ok:
        return None
    return RateLimitingConfig(
        redis=redis,
        on_backend_error=on_error,
        timeout=timeout,
        max_keys=max_keys,
        key_prefix=prefix,
        location=node.location(at_key=True),
    )


def read_backend(fields: Fields) -> Tuple[bool, Optional[RedisAddress]]:
    """
    The ``backend`` of a shared-state section (``rate_limiting``,
    ``plugin_store``): whether it could be read, and its Redis address
    (None for memory, the default).
    """
    if "backend" not in fields:
        return True, None
    node = fields["backend"]
    text = node.string()
    if text is None:
        return False, None
    if text == "memory":
        return True, None
    redis = redis_address(node, text)
    return redis is not None, redis


def redis_address(node: Node, text: str) -> Optional[RedisAddress]:
    """A `RedisAddress` from a ``redis://`` URL (``backend`` of the shared-state sections), or None after an issue."""
    expected = "expected memory or a Redis URL like redis://127.0.0.1:6379/0"
    if "://" not in text:
        node.issue(f"unknown backend {text!r}; {expected}{suggest(text, ['memory'])}")
        return None
    try:
        url = urlsplit(text)
        port = url.port or 6379
    except ValueError as e:
        node.issue(f"invalid Redis URL: {e}")
        return None
    if url.scheme == "rediss":
        node.issue("rediss:// (Redis over TLS) is not supported by this version; use redis://")
        return None
    if url.scheme != "redis":
        node.issue(f"unknown backend scheme {url.scheme!r}; {expected}")
        return None
    if not url.hostname:
        node.issue(f"the Redis URL has no host; {expected}")
        return None
    if url.query or url.fragment:
        node.issue("the Redis URL takes no query or fragment")
        return None
    path = url.path.strip("/")
    if path and not path.isdigit():
        node.issue(f"the Redis database must be a number, like redis://host:6379/0, got {path!r}")
        return None
    return RedisAddress(
        host=url.hostname,
        port=port,
        db=int(path) if path else 0,
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
    )


# -- rate_limit (route) ---------------------------------------------------


def parse_rate_limit(node: Node) -> Optional[RateLimitConfig]:
    if node.kind == "list":
        items = node.sequence(non_empty=True)
        if not items:
            return None
    else:
        items = [node]
    limits: List[LimitConfig] = []
    ok = True
    names = {}
    for item in items:
        limit = _limit(item)
        if limit is None:
            ok = False
            continue
        name = limit.policy_name()
        if name in names:
            item.issue(
                f"two limits are both named {name!r} in the rate limit headers; "
                "give one a different 'name'"
            )
            ok = False
        names[name] = item
        limits.append(limit)
    if not ok or not limits:
        return None
    return RateLimitConfig(limits=tuple(limits), location=node.location(at_key=True))


def _limit(node: Node) -> Optional[LimitConfig]:
    fields = node.mapping(LIMIT_KEYS, required=("rate",))
    if fields is None:
        return None
    rate = fields.read("rate", Node.rate, None)
    algorithm = fields.read("algorithm", lambda n: n.choice(tuple(ALGORITHMS)), "token_bucket")
    burst = fields.read("burst", lambda n: n.integer(min=1), None)
    key = fields.read("key", _key, ("ip",))
    name = fields.read("name", _policy_name, None)
    if rate is None or "rate" not in fields:
        return None
    if burst is not None and ALGORITHMS.get(algorithm) != TOKEN_BUCKET:
        fields["burst"].issue(f"burst applies to the token_bucket algorithm only (this limit is {algorithm})", at_key=True)
        return None
    config = LimitConfig(rate=rate, algorithm=algorithm, burst=burst, key=key, name=name, location=node.location())
    limit = config.limit()
    if limit.period_us < 1000:
        fields["rate"].issue("the period of a rate must be at least 1ms")
        return None
    return config


def _key(node: Node) -> Optional[Tuple[str, ...]]:
    items = [node] if node.kind != "list" else node.sequence(non_empty=True)
    if not items:
        return None
    parts: List[str] = []
    for item in items:
        text = item.string()
        if text is None:
            return None
        part = read_key_part(item, text)
        if part is None:
            return None
        if part in parts:
            item.issue(f"{text!r} appears twice in the key")
            return None
        parts.append(part)
    return tuple(parts)


def _policy_name(node: Node) -> Optional[str]:
    text = node.string()
    if text is not None and not _POLICY_NAME.fullmatch(text):
        node.issue("a limit name is 1 to 64 printable ASCII characters, without '\"' or '\\'")
        return None
    return text
