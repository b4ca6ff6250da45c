"""
The route table as operators read it: one `RouteRow` per route in the
order the matcher prefers them (`twistgate routes`, ``/admin/routes``,
``/admin/explain``), and its plain-text form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence

import attrs

from twistgate.config.model import RouteConfig

if TYPE_CHECKING:
    from twistgate.routing.compiled import CompiledRoute
    from twistgate.routing.table import RouteTable

__all__ = ["RouteRow", "destination_text", "format_routes", "route_rows"]


@attrs.frozen(kw_only=True)
class RouteRow:
    """One route as `twistgate routes` and the admin API show it."""

    rank: int  # 1 = preferred first when several routes match a request
    priority: int
    host: str  # "*" = any host
    methods: str  # "*" = any method
    path: str
    kind: str  # exact | param | regex | prefix
    name: str
    upstream: str
    rewrite: str  # "" when the path is forwarded unchanged
    config: RouteConfig = attrs.field(repr=False)


def route_rows(routes: "Sequence[CompiledRoute[object]]") -> List[RouteRow]:
    """`routes`, ranked, as rows."""
    rows = []
    for route in routes:
        config = route.config
        rewrite = []
        if route.strip is not None:
            rewrite.append(f"strip {route.strip}")
        if route.add is not None:
            rewrite.append(f"add {route.add}")
        regex_rewrite = config.policies.get("rewrite")
        if regex_rewrite is not None:
            rewrite.append(f"rewrite {regex_rewrite.regex.pattern} -> {regex_rewrite.text}")
        rows.append(
            RouteRow(
                rank=route.rank,
                priority=config.priority,
                host=config.host or "*",
                methods=",".join(sorted(config.methods)) if config.methods is not None else "*",
                path=config.path,
                kind=route.kind,
                name=config.name,
                upstream=destination_text(config),
                rewrite=", ".join(rewrite),
                config=config,
            )
        )
    return rows


def destination_text(config: RouteConfig) -> str:
    """Where a route sends requests, in a few words: ``api``, ``api-v2:10,api:90``, ``redirect 301``..."""
    if config.split:
        return ",".join(f"{arm.upstream}:{arm.weight}" for arm in config.split)
    if config.redirect is not None:
        return f"redirect {config.redirect.status} {config.redirect.to}"
    if config.respond is not None:
        return f"respond {config.respond.status}"
    return config.upstream


def format_routes(table: "RouteTable[object]") -> str:
    """A plain-text table of `RouteTable.rows`, one line per route."""
    header = ("#", "PRIORITY", "HOST", "METHODS", "PATH", "KIND", "ROUTE", "UPSTREAM", "REWRITE")
    lines = [header] + [
        (
            str(r.rank), str(r.priority), r.host, r.methods, r.path,
            r.kind, r.name, r.upstream, r.rewrite or "-",
        )
        for r in table.rows()
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines
    ) + "\n"
