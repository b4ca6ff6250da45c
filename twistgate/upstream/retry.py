"""
When a failed attempt may be tried again, and how long to wait first.

The rules, in order (each one can only say no):

1. attempts left (``attempts`` counts every try, the first included);
2. the failure is one the policy retries on (``connect_failure``, ``reset``,
   ``timeout`` or a listed response status);
3. a request that may have reached the upstream is retried only if its
   method is idempotent (RFC 9110 §9.2.2), the route opted in
   (``non_idempotent: true``) or it carries an ``Idempotency-Key``; a request
   that never left (a connect failure) is always safe;
4. its body can be sent again: none, or kept whole within ``replay_buffer``;
5. the retry budget has room.

The wait is exponential backoff with full jitter (AWS's "full jitter"):
uniform in ``[0, min(max_backoff, backoff * 2**(n-1))]`` before retry ``n``.
"""

from __future__ import annotations

from random import Random
from typing import Any, Optional

import attrs

from twistgate.config.model import RouteConfig, UpstreamConfig
from twistgate.upstream.settings import RetryConfig, RouteRetryConfig, RouteTimeoutsConfig

#: RFC 9110 §9.2.2.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


@attrs.frozen(kw_only=True)
class CallPolicy:
    """What one route's requests to one upstream may do: timeouts and retries, resolved once."""

    connect: float
    read: float
    total: Optional[float] = None
    retry: Optional[RetryConfig] = None  # None: one attempt only
    non_idempotent: bool = False
    write: Optional[float] = None  # the upstream accepting none of the body for this long fails the attempt

    @property
    def attempts(self) -> int:
        return self.retry.attempts if self.retry is not None else 1


def call_policy(upstream: UpstreamConfig, route: Optional[RouteConfig]) -> CallPolicy:
    """The upstream's timeouts and retry, with the route's overrides on top."""
    timeouts = upstream.timeouts
    connect, read, total, write = timeouts.connect, timeouts.read, timeouts.total, timeouts.write
    retry: Optional[RetryConfig] = upstream.policies.get("retry")
    non_idempotent = False
    if route is not None:
        overrides: Optional[RouteTimeoutsConfig] = route.policies.get("timeouts")
        if overrides is not None:
            connect = overrides.connect if overrides.connect is not None else connect
            read = overrides.read if overrides.read is not None else read
            total = overrides.total if overrides.total is not None else total
            write = overrides.write if overrides.write is not None else write
        route_retry: Optional[RouteRetryConfig] = route.policies.get("retry")
        if route_retry is not None:
            retry = route_retry.applied_to(retry)
            non_idempotent = route_retry.non_idempotent
    if retry is not None and retry.attempts <= 1:
        retry = None
    return CallPolicy(connect=connect, read=read, total=total, retry=retry, non_idempotent=non_idempotent, write=write)


def safe_to_repeat(policy: CallPolicy, method: bytes, headers: Any) -> bool:
    """Whether sending this request a second time is acceptable (rule 3)."""
    return (
        method in IDEMPOTENT_METHODS
        or policy.non_idempotent
        or headers.hasHeader(b"Idempotency-Key")
    )


def retries_on(retry: RetryConfig, kind: Optional[str], status: Optional[int]) -> bool:
    """Whether the policy retries this failure kind or response status (rule 2)."""
    if status is not None:
        return status in retry.statuses
    return kind in retry.on


def backoff(retry: RetryConfig, number: int, rng: Random) -> float:
    """The wait before retry `number` (1 for the first retry): full jitter."""
    ceiling = min(retry.max_backoff, retry.backoff * (2 ** (number - 1)))
    return rng.uniform(0, ceiling)
