"""
Health answers for orchestrators and load balancers, none behind a token.

On the admin listener (`twistgate.ops.admin`): ``GET /livez`` (the process
answers) and ``GET /readyz`` (`GatewayService.readiness`: 503 while
starting, while draining, and, with ``admin.ready_requires_healthy_target:
true``, while no forwarding route can reach a healthy target:
`can_reach_a_target`).

On a public listener with ``health_path`` (`HealthPath`): a small JSON
liveness document at that exact path, answered before routing (no route,
plugin, authentication or upstream is involved, nothing is forwarded), 503
while draining so a load balancer stops sending new connections.  It is
neither logged nor counted as a request.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Optional, Tuple

from twistgate.headers import Headers

__all__ = ["HealthPath", "can_reach_a_target", "health_path_of", "reachable_routes"]

_ANSWER_METHODS = (b"GET", b"HEAD")


def can_reach_a_target(generation: Any) -> bool:
    """False only while routes forward and none of them has a healthy target (answer-only routes do not count)."""
    forwarding, reachable = reachable_routes(generation)
    return bool(reachable) or not forwarding


def reachable_routes(generation: Any) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The routes that forward to an upstream, and those of them with a healthy target now."""
    usable: Dict[str, bool] = {}
    forwarding, reachable = [], []
    for route in generation.config.routes:
        names = route.upstream_names
        if not names:
            continue  # redirect / respond: answered by the gateway itself
        forwarding.append(route.name)
        for name in names:
            if name not in usable:
                upstream = generation.upstreams.get(name)
                usable[name] = upstream is not None and _has_healthy_target(upstream.snapshot())
            if usable[name]:
                reachable.append(route.name)
                break
    return tuple(forwarding), tuple(reachable)


def _has_healthy_target(targets: Iterable[Dict[str, Any]]) -> bool:
    return any(t.get("healthy", True) and not t.get("ejected") and t.get("breaker") != "open" for t in targets)


class HealthPath:
    """The ``listeners[].health_path`` answers of one configuration: listener name -> path."""

    __slots__ = ("paths",)

    def __init__(self, listeners: Iterable[Any]) -> None:
        self.paths: Dict[str, bytes] = {
            l.name: l.health_path.encode("ascii") for l in listeners if getattr(l, "health_path", None)
        }

    def answer(self, downstream: Any, draining: bool) -> bool:
        """Answer `downstream` if it asks for its listener's health path (True); else leave it alone."""
        path = self.paths.get(downstream.listener)
        if path is None or downstream.path != path:
            return False
        headers = Headers()
        raw = headers.raw
        raw[b"Content-Type"] = [b"application/json"]
        raw[b"Cache-Control"] = [b"no-store"]
        if downstream.method not in _ANSWER_METHODS:
            status, body = 405, {"status": "method_not_allowed"}
            raw[b"Allow"] = [b"GET, HEAD"]
        elif draining:
            status, body = 503, {"status": "draining"}
        else:
            status, body = 200, {"status": "alive"}
        if not downstream.body_complete:
            downstream.keep_alive = False  # an unread body must not be taken for the next request
        data = json.dumps(body, separators=(",", ":")).encode("ascii") + b"\n"
        downstream.respond(status, None, headers, data)
        return True


def health_path_of(config: Any) -> Optional[HealthPath]:
    """The configuration's health paths, or None when no listener has one (the common case costs nothing)."""
    paths = HealthPath(config.listeners)
    return paths if paths.paths else None
