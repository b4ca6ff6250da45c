"""
Names the configuration contract promises but this version does not implement
yet.  They are refused with a message saying so, not as unknown keys, so a
user who copied the contract's example learns what is missing.  When a feature
lands, remove its entry here and add its parser.
"""

from __future__ import annotations

from typing import FrozenSet, Mapping

#: Keys of each section that are in the contract but not implemented.
PENDING_KEYS: Mapping[str, FrozenSet[str]] = {
    "gateway": frozenset({"admin", "auth", "rate_limiting"}),
    "upstream": frozenset({"health_check", "circuit_breaker", "retry", "tls"}),
    "route": frozenset({"auth", "rate_limit", "cache", "cors", "headers"}),
}

#: Values of ``upstreams.<name>.balance`` in the contract but not implemented.
PENDING_BALANCE: FrozenSet[str] = frozenset()  # all implemented (twistgate.upstream.balancer)


def not_implemented(what: str) -> str:
    """The one wording for every pending name."""
    return f"{what} is part of the configuration contract but is not implemented in this version yet"
