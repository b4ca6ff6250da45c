"""
Request routing: from (method, Host, normalised path) to one configured route.

`RouteTable` compiles every `RouteConfig` once (`twistgate.routing.compiled`).
Exact, parameter and prefix routes go into a segment trie per host form, so
matching walks the request's segments once whatever the number of routes;
only regex routes are tried one by one.  The candidates found are ranked by
a key computed at construction (see ``docs/routing.md`` for the order), so
`RouteTable.match` does no parsing and no sorting.

The path given to `RouteTable.match` must be the output of
`twistgate.pathnorm.normalize_path`.
"""

from __future__ import annotations

from typing import Any, Dict, Generic, Iterable, List, Optional, Tuple, TypeVar

import attrs

from twistgate.conditions import RequestFacts
from twistgate.config.model import ConfigError, ConfigIssue, RouteConfig
from twistgate.errors import MethodNotAllowed
from twistgate.pathnorm import normalize_path
from twistgate.routing.compiled import CompiledRoute, RouteMatch
from twistgate.routing.hosts import normalize_host
from twistgate.routing.listing import RouteRow, route_rows

__all__ = ["RouteTable"]

T = TypeVar("T")

#: Paths (and Hosts) whose candidate routes `RouteTable.match` remembers, at most; and their longest path.
_KNOWN_MAX = 1024
_KNOWN_PATH_MAX = 256


class _Node:
    __slots__ = ("literal", "param", "terminal", "prefix")

    def __init__(self) -> None:
        self.literal: Dict[str, _Node] = {}
        self.param: Optional[_Node] = None
        self.terminal: List[CompiledRoute] = []  # exact and param routes ending here
        self.prefix: List[CompiledRoute] = []  # prefix routes whose prefix ends here


class _RouteSet:
    """The routes of one host form: a segment trie plus the regex routes."""

    __slots__ = ("root", "regex")

    def __init__(self) -> None:
        self.root = _Node()
        self.regex: List[CompiledRoute] = []

    def add(self, route: CompiledRoute) -> None:
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

    def collect(self, segments: List[str], path: str, out: List[CompiledRoute]) -> None:
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
        routes: List[CompiledRoute[T]] = []
        issues: List[ConfigIssue] = []
        regex_order: Dict[str, int] = {}
        for position, (config, payload) in enumerate(entries):
            order = regex_order.setdefault(config.path, len(regex_order)) if config.path.startswith("~") else 0
            try:
                routes.append(CompiledRoute(config, payload, position, order))
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
        #: (Host when routes have hosts, path) -> (its segments, the routes matching them, any method):
        #: what `_candidates` found before.  Bounded; a path is usually asked for again and again.
        self._known: Dict[Any, Tuple[List[str], List[CompiledRoute[T]]]] = {}
        #: (method, raw path, Host, listener) -> what `resolve` answered (routes without parameters only).
        self._resolved: Dict[Tuple[Any, ...], Tuple[str, RouteMatch[T]]] = {}

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
        key = (host, path) if self._by_host else path
        known = self._known.get(key)
        if known is None:
            segments = path[1:].split("/")
            candidates = self._candidates(host, segments, path)
            if len(path) <= _KNOWN_PATH_MAX:
                if len(self._known) >= _KNOWN_MAX:
                    self._known.clear()
                self._known[key] = (segments, candidates)
        else:
            segments, candidates = known
        if not candidates:
            return None
        if self._restricted:
            candidates = [route for route in candidates if route.admits(listener, facts)]
            if not candidates:
                return None
        best: Optional[CompiledRoute[T]] = None
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

    def resolve(
        self,
        method: bytes,
        raw_path: bytes,
        host: Optional[str],
        listener: Optional[str] = None,
        facts: "Optional[RequestFacts]" = None,
    ) -> Tuple[str, Optional[RouteMatch[T]]]:
        """
        ``(normalised path, match)`` of a request as received (`normalize_path`,
        then `match`).  A request like one seen before (method, raw path,
        and the Host and listener when routes depend on them) gets the same
        answer without either step, when its route has no parameters:
        the answer is then shared, and holds nothing a request may change.

        :raises InvalidPath, MethodNotAllowed: as `normalize_path` and `match`.
        """
        key = (method, raw_path, host if self._by_host else None, listener if self._restricted else None)
        known = self._resolved.get(key)
        if known is not None:
            return known
        path = normalize_path(raw_path)
        match = self.match(method.decode("latin-1"), host, path, listener=listener, facts=facts)
        if match is not None and not match.params and not self.conditional and len(raw_path) <= _KNOWN_PATH_MAX:
            if len(self._resolved) >= _KNOWN_MAX:
                self._resolved.clear()
            self._resolved[key] = (path, match)
        return path, match

    def _candidates(self, host: Optional[str], segments: List[str], path: str) -> List[CompiledRoute[T]]:
        """Every route whose host and path match, whatever the method."""
        out: List[CompiledRoute[T]] = []
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
        return route_rows(self._routes)
