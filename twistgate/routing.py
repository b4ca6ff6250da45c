"""
Request routing: from (method, Host, normalised path) to one configured route.

`RouteTable` compiles every `RouteConfig` once.  Exact, parameter and prefix
routes go into a segment trie per host form, so matching walks the request's
segments once whatever the number of routes; only regex routes are tried one
by one.  The candidates found are ranked by a key computed at construction
(see ``docs/routing.md`` for the order), so `RouteTable.match` does no parsing
and no sorting.

The path given to `RouteTable.match` must be the output of
`twistgate.pathnorm.normalize_path`.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, Generic, Iterable, List, Optional, Pattern, Tuple, TypeVar
from urllib.parse import unquote

import attrs

from twistgate.conditions import RequestFacts
from twistgate.config.model import ConfigError, ConfigIssue, RouteConfig
from twistgate.errors import MethodNotAllowed
from twistgate.pathnorm import InvalidPath, normalize_path

__all__ = ["RequestFacts", "RouteMatch", "RouteRow", "RouteTable", "destination_text", "format_routes", "normalize_host"]

T = TypeVar("T")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}\Z")


@attrs.define
class RouteMatch(Generic[T]):
    """
    The route chosen for a request (one per request: a plain slotted class,
    not a frozen one, whose ``__init__`` would pay ``object.__setattr__``
    per field; do not change it).

    :ivar config: the route's configuration.
    :ivar payload: what the route table was built with for this route.
    :ivar params: ``{name}`` segments and regex named groups, percent-decoded.
    :ivar rewritten_path: the path to send upstream, after ``strip_prefix``
        and ``add_prefix``.
    :ivar raw_params: the same values as ``params``, still percent-encoded
        as in the path (for URLs: redirect targets).
    """

    config: RouteConfig
    payload: T
    params: Dict[str, str]
    rewritten_path: str
    raw_params: Dict[str, str] = attrs.field(factory=dict)


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


def normalize_host(value: Optional[str]) -> Optional[str]:
    """
    The host part of a ``Host`` header as routes compare it: lower-case,
    without port or a trailing dot; IPv6 literals keep their brackets.

    :param value: the header value (``"API.example.com:8443"``,
        ``"[::1]:8080"``) or None.
    :return: e.g. ``"api.example.com"``, ``"[::1]"``; None if empty.
    """
    if not value:
        return None
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            host = host[: end + 1]
    else:
        colon = host.find(":")
        if colon != -1 and host.find(":", colon + 1) == -1:
            host = host[:colon]
    if host.endswith("."):
        host = host[:-1]
    return host or None


class _Route(Generic[T]):
    """A compiled route: everything `match` needs, computed once."""

    __slots__ = (
        "config", "payload", "kind", "accepts", "host_key", "segments",
        "prefix", "params_at", "regex", "strip", "add", "key", "rank", "listeners", "conditions",
    )

    def __init__(self, config: RouteConfig, payload: T, position: int, regex_order: int = 0) -> None:
        self.config = config
        self.payload = payload
        self.rank = 0
        self.listeners = frozenset(config.listeners) if config.listeners is not None else None
        self.conditions = config.match
        self.kind, self.segments, self.prefix, self.params_at, self.regex = _parse_path(config.path)
        self.host_key, host_rank = _parse_host(config.host)
        if config.methods is None:
            self.accepts: Optional[FrozenSet[str]] = None
        elif not config.methods:
            raise ValueError("methods: must not be empty (leave it out to accept any method)")
        else:
            methods = frozenset(config.methods)
            self.accepts = methods | {"HEAD"} if "GET" in methods else methods
            if "cors" in config.policies:  # CORS preflights; the cors stage 405s other OPTIONS
                self.accepts = self.accepts | {"OPTIONS"}
        self.strip = _rewrite_prefix(config.strip_prefix, "strip_prefix")
        self.add = _rewrite_prefix(config.add_prefix, "add_prefix")
        literals = sum(1 for s in self.segments if s is not None)
        if self.kind == "exact":
            path_rank: Tuple[int, ...] = (0,)
        elif self.kind == "param":
            path_rank = (1, -literals, len(self.params_at))
        elif self.kind == "regex":
            path_rank = (2, regex_order)  # regex routes in file order (of each pattern's first route)
        else:
            path_rank = (3, -len(self.segments), -literals)
        # A route with `match` conditions is more specific than the same path
        # without: it ranks first whatever the order in the file.
        conditions = config.match.count if config.match is not None else 0
        self.key = (
            -config.priority, host_rank, path_rank, -conditions,
            0 if config.methods is not None else 1, config.index, position,
        )

    def bind(self, path: str, segments: List[str]) -> RouteMatch[T]:
        if self.params_at:
            params = {name: _decode(segments[i]) for i, name in self.params_at}
        elif self.regex is not None:
            found = self.regex.match(path)
            assert found is not None
            params = {k: _decode(v) for k, v in found.groupdict().items() if v is not None}
        else:
            params = {}
        if params and self.config.redirect is not None:  # only redirect targets need the encoded values
            if self.params_at:
                raw = {name: segments[i] for i, name in self.params_at}
            else:
                raw = {k: v for k, v in found.groupdict().items() if v is not None}
            return RouteMatch(self.config, self.payload, params, self.rewrite(path), raw)
        return RouteMatch(self.config, self.payload, params, self.rewrite(path))

    def admits(self, listener: Optional[str], facts: "Optional[RequestFacts]") -> bool:
        """The route's listeners and `match` conditions allow the request."""
        if self.listeners is not None and listener not in self.listeners:
            return False
        conditions = self.conditions
        return conditions is None or (facts is not None and facts.satisfy(conditions))

    def rewrite(self, path: str) -> str:
        strip = self.strip
        if strip is not None:
            if path == strip:
                path = "/"
            elif path.startswith(strip) and path[len(strip)] == "/":
                path = path[len(strip):]
        if self.add is not None:
            path = self.add + path
        return path


def _decode(value: str) -> str:
    return unquote(value, errors="replace") if "%" in value else value


def _parse_path(
    path: str,
) -> Tuple[str, Tuple[Optional[str], ...], bool, Tuple[Tuple[int, str], ...], Optional[Pattern[str]]]:
    """(kind, segments with None for params, is prefix, param positions, regex)."""
    if path.startswith("~"):
        try:
            regex = re.compile(path[1:])
        except re.error as e:
            raise ValueError(f"path: invalid regular expression: {e}") from None
        return "regex", (), False, (), regex
    if not path.startswith("/"):
        raise ValueError("path: must start with '/' (or '~' for a regular expression)")
    prefix = path.endswith("/*")
    body = path[:-2] if prefix else path
    raw = body[1:].split("/") if body else []
    segments: List[Optional[str]] = []
    params: List[Tuple[int, str]] = []
    for i, seg in enumerate(raw):
        found = _PARAM.match(seg)
        if found is not None:
            name = found.group(1)
            if any(name == n for _, n in params):
                raise ValueError(f"path: parameter {{{name}}} appears twice")
            params.append((i, name))
            segments.append(None)
            continue
        if "{" in seg or "}" in seg:
            raise ValueError("path: a parameter must be a whole segment named like {id}")
        if "*" in seg:
            raise ValueError("path: '*' is only allowed as the last segment, as in /api/*")
        if seg == "" and (prefix or i != len(raw) - 1):
            raise ValueError("path: empty segment ('//')")
        try:
            literal = normalize_path(("/" + seg).encode("utf-8"))[1:]
        except InvalidPath as e:
            raise ValueError(f"path: {e.message}") from None
        if seg and not literal:
            raise ValueError("path: '.' and '..' segments are not allowed")
        segments.append(literal)
    kind = "prefix" if prefix else ("param" if params else "exact")
    return kind, tuple(segments), prefix, tuple(params), None


def _parse_host(host: Optional[str]) -> Tuple[Optional[str], Tuple[int, int]]:
    """(host key, host rank): key is None, ".suffix" or the exact host."""
    if host is None or host.strip() == "*":
        return None, (2, 0)
    value = host.strip().lower()
    if value.endswith("."):
        value = value[:-1]
    rest = value[2:] if value.startswith("*.") else value
    if not rest or "*" in rest:
        raise ValueError("host: use an exact name or a leading wildcard label, as in *.example.com")
    if not rest.startswith("[") and ":" in rest:
        raise ValueError("host: must not include a port (IPv6 addresses go in brackets)")
    if value.startswith("*."):
        return value[1:], (1, -len(rest))
    return value, (0, 0)


def _rewrite_prefix(value: Optional[str], key: str) -> Optional[str]:
    if value is None:
        return None
    try:
        prefix = normalize_path(value.encode("utf-8")).rstrip("/")
    except InvalidPath as e:
        raise ValueError(f"{key}: {e.message}") from None
    return prefix or None


class _Node:
    __slots__ = ("literal", "param", "terminal", "prefix")

    def __init__(self) -> None:
        self.literal: Dict[str, _Node] = {}
        self.param: Optional[_Node] = None
        self.terminal: List[_Route] = []  # exact and param routes ending here
        self.prefix: List[_Route] = []  # prefix routes whose prefix ends here


class _RouteSet:
    """The routes of one host form: a segment trie plus the regex routes."""

    __slots__ = ("root", "regex")

    def __init__(self) -> None:
        self.root = _Node()
        self.regex: List[_Route] = []

    def add(self, route: _Route) -> None:
        if route.regex is not None:
            self.regex.append(route)
            return
        node = self.root
        for seg in route.segments:
            if seg is None:
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                child = node.literal.get(seg)
                if child is None:
                    child = node.literal[seg] = _Node()
                node = child
        (node.prefix if route.prefix else node.terminal).append(route)

    def collect(self, segments: List[str], path: str, out: List[_Route]) -> None:
        end = len(segments)
        stack = [(self.root, 0)]
        while stack:
            node, i = stack.pop()
            if node.prefix:
                out.extend(node.prefix)
            if i == end:
                if node.terminal:
                    out.extend(node.terminal)
                continue
            seg = segments[i]
            child = node.literal.get(seg)
            if child is not None:
                stack.append((child, i + 1))
            if node.param is not None and seg:
                stack.append((node.param, i + 1))
        for route in self.regex:
            if route.regex.match(path):  # type: ignore[union-attr]
                out.append(route)


class RouteTable(Generic[T]):
    """
    All routes, compiled for matching.

    :param entries: ``(route config, payload)`` pairs; the payload (for
        example the route's filter chain) is handed back in `RouteMatch`.
    :raises ConfigError: listing every route whose path, host, methods or
        rewrites cannot be compiled.
    """

    def __init__(self, entries: Iterable[Tuple[RouteConfig, T]]) -> None:
        routes: List[_Route[T]] = []
        issues: List[ConfigIssue] = []
        regex_order: Dict[str, int] = {}
        for position, (config, payload) in enumerate(entries):
            order = regex_order.setdefault(config.path, len(regex_order)) if config.path.startswith("~") else 0
            try:
                routes.append(_Route(config, payload, position, order))
            except ValueError as e:
                location = config.location
                where = location.path or f"routes[{config.index}]"
                key, _, message = str(e).partition(": ")
                issues.append(
                    ConfigIssue(location=attrs.evolve(location, path=f"{where}.{key}"), message=message)
                )
        if issues:
            raise ConfigError(issues)
        routes.sort(key=lambda r: r.key)
        self._routes = routes
        self._any = _RouteSet()
        self._exact: Dict[str, _RouteSet] = {}
        self._wild: Dict[str, _RouteSet] = {}
        for rank, route in enumerate(routes, 1):
            route.rank = rank
            key = route.host_key
            if key is None:
                target = self._any
            else:
                table = self._wild if key.startswith(".") else self._exact
                target = table.setdefault(key, _RouteSet())
            target.add(route)
        self._by_host = bool(self._exact or self._wild)
        self._restricted = any(r.listeners is not None or r.conditions is not None for r in routes)
        #: Some route has `match` conditions: callers pass `RequestFacts`.
        self.conditional = any(r.conditions is not None for r in routes)

    def match(
        self,
        method: str,
        host: Optional[str],
        path: str,
        *,
        listener: Optional[str] = None,
        facts: "Optional[RequestFacts]" = None,
    ) -> Optional[RouteMatch[T]]:
        """
        The best route for a request, or None (404).

        :param method: the request method, as sent (methods are case-sensitive).
        :param host: the ``Host`` header value, with or without port, or None.
        :param path: the normalised path (`normalize_path`), without query.
        :param listener: the name of the listener the request arrived on:
            routes with ``listeners`` serve only theirs.
        :param facts: the request's headers, cookies and query, for routes
            with ``match`` conditions (without it, such routes never match).
        :raises MethodNotAllowed: if routes match the host and path but none
            accepts ``method``; its ``allow`` lists what they accept.
        """
        segments = path[1:].split("/")
        candidates = self._candidates(host, segments, path)
        if not candidates:
            return None
        if self._restricted:
            candidates = [route for route in candidates if route.admits(listener, facts)]
            if not candidates:
                return None
        best: Optional[_Route[T]] = None
        for route in candidates:
            accepts = route.accepts
            if (accepts is None or method in accepts) and (best is None or route.rank < best.rank):
                best = route
        if best is None:
            allow = set()
            for route in candidates:
                allow |= route.accepts  # type: ignore[arg-type]
            raise MethodNotAllowed(sorted(allow))
        return best.bind(path, segments)

    def _candidates(self, host: Optional[str], segments: List[str], path: str) -> List[_Route[T]]:
        """Every route whose host and path match, whatever the method."""
        out: List[_Route[T]] = []
        if self._by_host:
            name = normalize_host(host)
            if name is not None:
                exact = self._exact.get(name)
                if exact is not None:
                    exact.collect(segments, path, out)
                if self._wild:
                    dot = name.find(".", 1)
                    while dot != -1:
                        wild = self._wild.get(name[dot:])
                        if wild is not None:
                            wild.collect(segments, path, out)
                        dot = name.find(".", dot + 1)
        self._any.collect(segments, path, out)
        return out

    def rows(self) -> List[RouteRow]:
        """The routes in the order the matcher prefers them."""
        rows = []
        for route in self._routes:
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


def format_routes(table: RouteTable[object]) -> str:
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
