"""
Health answers for orchestrators and load balancers, none behind a token.

On the admin listener:

* ``GET /livez``: 200 while the process runs (the event loop answers).
* ``GET /readyz``: 200 when the gateway can serve; 503 while it starts
  (services and plugins' ``on_startup`` still running), while it drains
  (SIGTERM), and, with ``admin.ready_requires_healthy_target: true``, while
  no forwarding route can reach a healthy target.

On a public listener with ``health_path`` (`HealthPath`): a small JSON
liveness document at that exact path, answered before routing (no route,
plugin, authentication or upstream is involved, nothing is forwarded), 503
while draining so a load balancer stops sending new connections.  Neither
is logged nor counted as a request.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Optional, Tuple

from twistgate.headers import Headers

__all__ = ["HealthPath", "liveness", "readiness", "reachable_routes"]

_ANSWER_METHODS = (b"GET", b"HEAD")


def liveness() -> Dict[str, Any]:
    return {"status": "ok"}


def readiness(runtime: Any) -> Tuple[int, Dict[str, Any]]:
    """
    ``(status, body)`` for ``/readyz``.

    :param runtime: the `GatewayService`: ``starting``, ``draining``,
        ``generation`` and ``admin_settings()``.
    """
    if getattr(runtime, "starting", False):
        return 503, {"status": "starting"}
    if runtime.draining:
        return 503, {"status": "draining"}
    generation = runtime.generation
    settings = runtime.admin_settings()
    if settings is not None and getattr(settings, "ready_requires_healthy_target", False):
        forwarding, reachable = reachable_routes(generation)
        if forwarding and not reachable:
            return 503, {"status": "no_healthy_target", "routes": len(forwarding), "reachable_routes": 0}
    return 200, {"status": "ready"}


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
            status, body = 200, liveness()
        if not downstream.body_complete:
            downstream.keep_alive = False  # an unread body must not be taken for the next request
        data = json.dumps(body, separators=(",", ":")).encode("ascii") + b"\n"
        downstream.respond(status, None, headers, data)
        return True


def health_path_of(config: Any) -> Optional[HealthPath]:
    """The configuration's health paths, or None when no listener has one (the common case costs nothing)."""
    paths = HealthPath(config.listeners)
    return paths if paths.paths else None
