"""
The HTTP/1.1 engine's client as an upstream group's `UpstreamClient`.

One `UpstreamPool` per upstream group: connections are pooled per target
(`Target.key`) and made through the target's endpoint (TLS and mTLS with the
group's policy, built once per target).  The pool's own events (a request
retried on a fresh connection after the upstream closed a pooled one, a
connection the upstream closed) are reported per upstream for metrics.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred

from twistgate.config.model import UpstreamConfig
from twistgate.engine.pool import UpstreamPool
from twistgate.headers import Headers

__all__ = ["PooledClient", "pooled_client_factory"]


class PooledClient:
    """`request(target, ...)` on an `UpstreamPool`; `close()` closes its idle connections."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    def request(
        self,
        target: Any,
        method: bytes,
        path: bytes,
        headers: Headers,
        body: Any,
        interim: Optional[Callable[[int, Headers], None]] = None,
    ) -> "Deferred[Any]":
        return self.pool.request(target.key, target.endpoint, method, path, headers, body, on_interim=interim)

    def send(
        self,
        target: Any,
        method: bytes,
        path: bytes,
        headers: Headers,
        body: Any,
        interim: Optional[Callable[[int, Headers], None]],
        on_head: Callable[[Any], None],
        on_failed: Callable[[Any], None],
    ) -> Any:
        """`request` with callbacks (`UpstreamPool.send`): a handle whose ``cancel()`` silences both."""
        return self.pool.send(target.key, target.endpoint, method, path, headers, body, on_head, on_failed, on_interim=interim)

    def close(self) -> "Deferred[Any]":
        return self.pool.close()


def pooled_client_factory(clock: Any, on_event: Optional[Callable[[str, str], None]] = None) -> Callable[[UpstreamConfig, Any], PooledClient]:
    """
    ``client_for(upstream config, tls policy)`` for a generation: a pool per
    upstream group, sized by ``upstreams.X.pool``; `on_event(event, upstream)`
    hears ``stale_retry`` and ``closed_by_upstream``.
    """

    def client_for(config: UpstreamConfig, tls_policy: Any) -> PooledClient:
        name = config.name
        report = (lambda event, key: on_event(event, name)) if on_event is not None else None
        pool = UpstreamPool(
            clock,
            max_idle_per_target=config.pool.max_idle_per_target,
            idle_timeout=config.pool.idle_timeout,
            on_event=report,
        )
        return PooledClient(pool)

    return client_for
