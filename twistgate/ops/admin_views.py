"""
The read-only views of the admin API: ``/admin/health``, ``/routes``,
``/upstreams``, ``/stats``, ``/config`` and ``/explain``, each a JSON
value computed from the runtime (the serving generation and its ops).

`twistgate.ops.admin.AdminResource` answers them; a supervisor's admin
(`twistgate.workers.hostadmin`) answers the same paths from its workers.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from twistgate import __version__
from twistgate.errors import GatewayError
from twistgate.ops.explain import explain
from twistgate.ops.redact import effective_config
from twistgate.ops.runtime import upstream_targets

__all__ = ["config_view", "explain_view", "health_view", "query_arg", "routes_view", "stats_view", "upstreams_view"]


def health_view(runtime: Any) -> Any:
    """``/admin/health``: the body, and 503 while draining."""
    generation = runtime.generation
    ops = runtime.ops
    upstreams = {}
    for name, upstream in sorted(generation.upstreams.items()):
        targets = upstream_targets(upstream)
        upstreams[name] = {"targets": len(targets), "healthy": sum(1 for t in targets if t.get("healthy", True))}
    draining = runtime.draining
    body = {
        "status": "draining" if draining else "ok",
        "version": __version__,
        "generation": ops.number,
        "uptime_seconds": round(ops.clock.seconds() - ops.started, 3),
        "in_flight": ops.in_flight(),
        "open_connections": sum(ops.connections.values()),
        "routes": len(generation.config.routes),
        "upstreams": upstreams,
        "last_reload": ops.last_reload,
        "api_keys": _manages_keys(generation),
    }
    return (body, 503) if draining else body


def routes_view(runtime: Any) -> Any:
    """``/admin/routes``: every route, ranked, with its timeout and chain."""
    generation = runtime.generation
    rows = []
    for row in generation.routes.rows():
        runtime_route = _runtime_route(generation, row.name)
        rows.append(
            {
                "rank": row.rank, "name": row.name, "priority": row.priority, "host": row.host,
                "methods": row.methods, "path": row.path, "kind": row.kind, "upstream": row.upstream,
                "rewrite": row.rewrite or None,
                "timeout_seconds": runtime_route.timeout if runtime_route is not None else None,
                "policies": sorted(row.config.policies),
                "stages_and_plugins": list(runtime_route.chain.names) if runtime_route is not None else [],
            }
        )
    return {"generation": runtime.ops.number, "routes": rows}


def upstreams_view(runtime: Any) -> Any:
    """``/admin/upstreams``: every group and its targets' state."""
    generation = runtime.generation
    out = []
    for name, upstream in sorted(generation.upstreams.items()):
        targets = upstream_targets(upstream)
        in_flight = [t.get("in_flight") for t in targets if t.get("in_flight") is not None]
        out.append(
            {
                "name": name,
                "balance": upstream.config.balance,
                "policies": sorted(upstream.config.policies),
                "in_flight": sum(in_flight) if in_flight else None,
                "healthy_targets": sum(1 for t in targets if t.get("healthy", True)),
                "targets": targets,
            }
        )
    return {"generation": runtime.ops.number, "upstreams": out}


def stats_view(runtime: Any) -> Any:
    """``/admin/stats``: the request statistics of this process."""
    ops = runtime.ops
    body = ops.stats.snapshot()
    body.update(
        generation=ops.number,
        uptime_seconds=round(ops.clock.seconds() - ops.started, 3),
        in_flight=ops.in_flight(),
        open_connections=sum(ops.connections.values()),
    )
    return body


def config_view(runtime: Any) -> Any:
    """``/admin/config``: the serving configuration, secrets redacted."""
    config = runtime.generation.config
    return {"generation": runtime.ops.number, "source": config.source, "config": effective_config(config)}


def explain_view(runtime: Any, args: Dict[bytes, List[bytes]]) -> Any:
    """``/admin/explain?method=&host=&path=&header=``: which route a request would take, and why."""
    path = query_arg(args, b"path")
    if not path:
        raise GatewayError("Query parameter 'path' is required, as in ?method=GET&host=api.example.com&path=/users/1", status=400, code="bad_request")
    headers = {}
    for line in args.get(b"header", []):  # ?header=X-Canary:1 (repeatable)
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip()] = value.strip()
    return explain(
        runtime.generation,
        method=query_arg(args, b"method") or "GET",
        host=query_arg(args, b"host"),
        path=path,
        headers=headers,
        listener=query_arg(args, b"listener"),
    )


def query_arg(args: Dict[bytes, list], name: bytes) -> Optional[str]:
    """The first value of a query parameter (decoded text), or None."""
    values = args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


def _manages_keys(generation: Any) -> bool:
    """Whether ``/admin/keys`` is served (an api_key authenticator with its store): the dashboard's keys view."""
    api_keys = getattr(generation.services.auth, "api_keys", None)
    return bool(api_keys()) if api_keys is not None else False


def _runtime_route(generation: Any, name: str) -> Any:
    routes = getattr(generation, "routes_by_name", None)
    if routes is not None:
        return routes.get(name)
    return None
