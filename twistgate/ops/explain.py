"""
`explain`: which route a request would take and why, what runs on it in
which order, and where it would be sent; for ``GET /admin/explain`` and the
``twistgate explain`` command.

It asks the real route table (so the answer is the gateway's), then
re-checks each route alone for host, path and method to say why the others
lost, ranking by the documented order (docs/routing.md §4): priority, host
specificity, path specificity, a methods list, file order.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import attrs

from twistgate.conditions import RequestFacts
from twistgate.errors import MethodNotAllowed
from twistgate.headers import Headers
from twistgate.ops.runtime import upstream_targets
from twistgate.pathnorm import InvalidPath, normalize_path
from twistgate.routing import RouteTable, normalize_host


def _alone(config: Any, **changes: Any) -> "RouteTable[None]":
    """`config` as the only route, listeners and `match` left out (they are checked on their own)."""
    return RouteTable([(attrs.evolve(config, listeners=None, match=None, **changes), None)])


def _host_rank(host: Optional[str]) -> Tuple[int, int]:
    if host is None or host.strip() == "*":
        return (2, 0)
    value = host.strip().lower().rstrip(".")
    if value.startswith("*."):
        return (1, -len(value) + 2)
    return (0, 0)


def _path_rank(path: str, index: int) -> Tuple[int, ...]:
    if path.startswith("~"):
        return (2, index)
    prefix = path.endswith("/*")
    body = path[:-2] if prefix else path
    segments = body[1:].split("/") if body else []
    params = sum(1 for s in segments if s.startswith("{") and s.endswith("}"))
    literals = len(segments) - params
    if prefix:
        return (3, -len(segments), -literals)
    if params:
        return (1, -literals, params)
    return (0,)


def _conditions(config: Any) -> int:
    return config.match.count if config.match is not None else 0


_KIND_WORDS = {0: "an exact path", 1: "a parameter path", 2: "a regex path", 3: "a prefix path"}


def _host_words(host: Optional[str]) -> str:
    rank = _host_rank(host)
    return {0: f"exact host {host}", 1: f"wildcard host {host}", 2: "no host"}[rank[0]]


def why_beats(winner: Any, other: Any) -> str:
    """The first rule of the documented order on which `winner` ranks before `other`."""
    if winner.priority != other.priority:
        return f"priority {winner.priority} beats {other.priority}"
    wh, oh = _host_rank(winner.host), _host_rank(other.host)
    if wh != oh:
        return f"{_host_words(winner.host)} is more specific than {_host_words(other.host)}"
    wp, op = _path_rank(winner.path, winner.index), _path_rank(other.path, other.index)
    if wp[0] != op[0]:
        return f"{_KIND_WORDS[wp[0]]} ({winner.path}) beats {_KIND_WORDS[op[0]]} ({other.path})"
    wc, oc = _conditions(winner), _conditions(other)
    if wp == op and wc != oc:
        return (
            f"a route with {wc} match condition{'s' if wc != 1 else ''} is more specific than "
            f"the same path with {oc or 'none'}, whatever the order"
        )
    if wp != op:
        if wp[0] == 2:
            return f"regex routes are tried in file order: {winner.path} comes first"
        if wp[0] == 3:
            return f"the deeper or more literal prefix {winner.path} beats {other.path}"
        return f"{winner.path} has more literal segments or fewer parameters than {other.path}"
    if (winner.methods is None) != (other.methods is None):
        return "a route with a methods list beats one accepting any method"
    return "it comes first in the file"


def _pipeline(route: Any) -> Dict[str, Any]:
    from twistgate.chain import POLICIES

    layers = route.chain
    names = list(layers.names)
    builtin = {policy.name for policy in POLICIES}
    return {
        "stages_and_plugins": names,
        "stages": [n for n in names if n in builtin],
        "plugins": [n for n in names if n not in builtin],
        "hook_order": {hook: layers.order(hook) for hook in ("on_request", "on_response", "on_error")},
        "policies": sorted(route.config.policies),
    }



def _upstream(route: Any) -> Optional[Dict[str, Any]]:
    upstream = route.upstream
    if upstream is None:
        return None
    targets = []
    for target in upstream_targets(upstream):
        eligible = (
            bool(target.get("healthy", True)) and target.get("breaker") not in ("open",) and not target.get("ejected")
            and not target.get("draining")
        )
        targets.append({**target, "candidate": eligible})
    destination = route.destination
    return {
        "name": upstream.name,
        "split": [{"upstream": u.name, "weight": w} for u, w in destination.arms] if destination.split else None,
        "sticky_cookie": route.config.sticky.cookie if route.config.sticky is not None else None,
        "balance": upstream.config.balance,
        "policies": sorted(upstream.config.policies),
        "targets": targets,
        "candidates": [t["url"] for t in targets if t["candidate"]],
        "host_header": "the client's Host (preserve_host)" if route.preserve_host else "the chosen target's host",
        "timeout_seconds": route.timeout,
        "read_timeout_seconds": upstream.config.timeouts.read,
    }


def _answer(config: Any) -> Optional[Dict[str, Any]]:
    """What a redirect or respond route answers."""
    if config.redirect is not None:
        return {"kind": "redirect", "status": config.redirect.status, "to": config.redirect.to}
    if config.respond is not None:
        return {"kind": "respond", "status": config.respond.status, "body_bytes": len(config.respond.body)}
    return None


def _forwarded_path(route: Any, path: str) -> str:
    """The path sent upstream: strip/add prefix (done by the matcher), then the route's ``rewrite``."""
    rewrite = route.config.policies.get("rewrite")
    if rewrite is None:
        return path
    from twistgate.errors import BadRequest
    from twistgate.policies.transform.request import RewriteStage

    try:
        return RewriteStage(rewrite).rewrite(path)
    except BadRequest:
        return f"(400: the rewritten path of {path} is not valid)"


def explain(
    generation: Any,
    method: str = "GET",
    host: Optional[str] = None,
    path: str = "/",
    *,
    headers: Optional[Dict[str, str]] = None,
    listener: Optional[str] = None,
) -> Dict[str, Any]:
    """
    The explanation as a JSON-ready dict; ``status`` is what the client would get from routing.

    :param path: the request target; a query string is used by ``match`` conditions.
    :param headers: request headers (``Cookie`` included), for ``match`` conditions.
    :param listener: the listener the request would arrive on (routes with ``listeners``).
    """
    raw_path, _, query = path.partition("?")
    raw_path = raw_path or "/"
    facts = RequestFacts(Headers({k: [v] for k, v in (headers or {}).items()}), query.encode("latin-1"))
    answer: Dict[str, Any] = {"request": {"method": method, "host": host, "path": raw_path}}
    if query:
        answer["request"]["query"] = query
    if listener is not None:
        answer["request"]["listener"] = listener
    redirect_port = generation.https_redirects.get(listener) if listener is not None else None
    if redirect_port is not None:
        answer.update(
            result="redirect_https", status=308,
            why=f"listener {listener} has redirect_https: every request answers 308 to port {redirect_port}, before routing",
        )
        return answer
    try:
        normalized = normalize_path(raw_path.encode("utf-8"))
    except InvalidPath as error:
        answer.update(result="bad_path", status=400, why=f"the path cannot be normalised: {error.message}")
        return answer
    answer["request"]["normalized_path"] = normalized
    table = generation.routes
    try:
        match = table.match(method, host, normalized, listener=listener, facts=facts)
        allow: List[str] = []
    except MethodNotAllowed as error:
        match, allow = None, list(error.allow)
    winner = match.config if match is not None else None
    considered = []
    for row in table.rows():
        config = row.config
        path_ok = _alone(config, host=None, methods=None).match(method, host, normalized) is not None
        host_ok = _alone(config, path="/*", methods=None, strip_prefix=None, add_prefix=None).match(method, host, "/") is not None
        accepts = config.methods is None or method in config.methods or (method == "HEAD" and "GET" in config.methods)
        listener_ok = config.listeners is None or listener in config.listeners
        conditions = [
            {"condition": what, "held": held, "request_has": seen}
            for what, held, seen in (facts.explain(config.match) if config.match is not None else ())
        ]
        failed = next((c for c in conditions if not c["held"]), None)
        if winner is not None and config.name == winner.name:
            verdict = "chosen"
            if conditions:
                verdict += ": " + "; ".join(f"{c['condition']} held ({c['request_has']})" for c in conditions)
        elif not host_ok:
            verdict = f"host {normalize_host(host) or '(none)'} does not match {config.host}"
        elif not path_ok:
            verdict = f"path {normalized} does not match {config.path}"
        elif not listener_ok:
            shown = listener if listener is not None else "(none given: use --listener)"
            verdict = f"listener {shown} is not in {list(config.listeners)}"
        elif failed is not None:
            verdict = f"match condition {failed['condition']} does not hold (request has: {failed['request_has']})"
        elif not accepts:
            verdict = f"method {method} is not in {sorted(config.methods)}"
        elif winner is not None:
            verdict = f"outranked by {winner.name}: {why_beats(winner, config)}"
        else:
            verdict = "not chosen"
        considered.append(
            {
                "rank": row.rank, "name": config.name, "priority": config.priority, "host": row.host,
                "methods": row.methods, "path": config.path, "kind": row.kind,
                "host_matches": host_ok, "path_matches": path_ok, "method_accepted": accepts, "verdict": verdict,
                "listener_matches": listener_ok, "conditions": conditions,
                "conditions_hold": failed is None,
            }
        )
    answer["considered"] = considered
    if match is None:
        if allow:
            answer.update(
                result="method_not_allowed", status=405, allow=allow,
                why=f"routes match the host and path but none accepts {method}; Allow: {', '.join(allow)}",
            )
        else:
            answer.update(result="no_route", status=404, why="no route matches the host and path")
        answer["pipeline"] = {"on_error": [c.plugin for c in getattr(generation.global_plugins, "_on_error", ())]}
        return answer
    route = match.payload
    rivals = [
        c for c in considered
        if c["host_matches"] and c["path_matches"] and c["method_accepted"] and c["listener_matches"]
        and c["conditions_hold"] and not c["verdict"].startswith("chosen")
    ]
    why = "the only route matching host, path and method"
    if rivals:
        why = f"it matches host, path and method and ranks first of {len(rivals) + 1} that do"
    row = next(r for r in table.rows() if r.name == route.name)
    answer.update(
        result="matched",
        status=200,
        why=why,
        route={
            "name": route.name, "rank": row.rank, "priority": winner.priority, "host": row.host,
            "methods": row.methods, "path": winner.path, "kind": row.kind, "params": dict(match.params),
            "forwarded_path": _forwarded_path(route, match.rewritten_path), "rewrite": row.rewrite or None,
            "decided_by": next(c["conditions"] for c in considered if c["name"] == route.name) or None,
        },
        pipeline=_pipeline(route),
        upstream=_upstream(route),
        answer=_answer(winner),
    )
    return answer


def format_explanation(answer: Dict[str, Any]) -> str:
    """The explanation as text, for the ``twistgate explain`` command."""
    req = answer["request"]
    lines = [f"{req['method']} {req.get('host') or '(any host)'} {req['path']}"]
    if req.get("normalized_path") not in (None, req["path"]):
        lines.append(f"  normalised path: {req['normalized_path']}")
    lines.append(f"result: {answer['result']} ({answer['status']}): {answer['why']}")
    route = answer.get("route")
    if route:
        lines.append(f"route: {route['name']} (#{route['rank']}, priority {route['priority']}, {route['kind']} {route['path']}, host {route['host']}, methods {route['methods']})")
        if route["params"]:
            lines.append(f"  params: {route['params']}")
        if answer.get("answer"):
            gives = answer["answer"]
            extra = f" to {gives['to']}" if gives["kind"] == "redirect" else ""
            lines.append(f"  answers itself: {gives['kind']} {gives['status']}{extra}")
        else:
            lines.append(f"  forwarded path: {route['forwarded_path']}")
        for c in route.get("decided_by") or ():
            lines.append(f"  match: {c['condition']}: {'held' if c['held'] else 'did not hold'} (request has: {c['request_has']})")
    lines.append("routes considered:")
    for c in answer.get("considered", []):
        lines.append(f"  #{c['rank']:<3} {c['name']:<20} {c['verdict']}")
    pipeline = answer.get("pipeline") or {}
    if "hook_order" in pipeline:
        lines.append(f"on_request order: {', '.join(pipeline['hook_order']['on_request']) or '(none)'}")
        lines.append(f"on_response order: {', '.join(pipeline['hook_order']['on_response']) or '(none)'}")
        lines.append(f"policies: {', '.join(pipeline['policies']) or '(none)'}")
    upstream = answer.get("upstream")
    if upstream:
        if upstream.get("split"):
            arms = ", ".join(f"{a['upstream']} ({a['weight']})" for a in upstream["split"])
            lines.append(f"split: {arms}; per request" + (f", sticky cookie {upstream['sticky_cookie']}" if upstream["sticky_cookie"] else ""))
        lines.append(f"upstream: {upstream['name']} ({upstream['balance']}; {', '.join(upstream['policies']) or 'no policies'})")
        for t in upstream["targets"]:
            state = "candidate" if t["candidate"] else "not a candidate"
            lines.append(f"  {t['url']} weight {t.get('weight')} healthy={t.get('healthy')} breaker={t.get('breaker')}: {state}")
    return "\n".join(lines) + "\n"


def main(args: Any, build: Any) -> int:
    """
    ``twistgate explain FILE --method M --host H --path P [--json]``: exit 0
    when a route matches, 3 when none does, 1 for an invalid configuration
    (the exit statuses of every ``twistgate`` command, twistgate.cli).
    """
    import json
    import sys

    from twistgate.config import ConfigError

    try:
        generation = build(args.file)
    except ConfigError as error:
        print(f"{args.file}: invalid configuration", file=sys.stderr)
        for issue in error.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{args.file}: cannot read: {error}", file=sys.stderr)
        return 1
    headers: Dict[str, str] = {}
    for line in args.header or ():
        name, sep, value = line.partition(":")
        if not sep:
            print(f"--header {line!r}: expected NAME: VALUE", file=sys.stderr)
            return 2
        headers[name.strip()] = value.strip()
    if args.cookie:
        headers["Cookie"] = "; ".join(args.cookie)
    answer = explain(
        generation, method=args.method.upper(), host=args.host, path=args.path, headers=headers, listener=args.listener
    )
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
    else:
        print(format_explanation(answer), end="")
    return 0 if answer["result"] in ("matched", "redirect_https") else 3
