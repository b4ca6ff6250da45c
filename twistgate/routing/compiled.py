"""
A route configuration compiled for matching (`CompiledRoute`), and what a
match yields (`RouteMatch`).

Everything the match loop needs (the path's segments and parameters, the
methods accepted, the host key, the rewrite prefixes and the rank key) is
computed here once per route, so that `twistgate.routing.table` does no
parsing per request.  A route that cannot be compiled raises `ValueError`
``"key: message"``; the table turns it into a `ConfigIssue`.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, Generic, List, Optional, Pattern, Tuple, TypeVar
from urllib.parse import unquote

import attrs

from twistgate.conditions import RequestFacts
from twistgate.config.model import RouteConfig
from twistgate.pathnorm import InvalidPath, normalize_path
from twistgate.routing.hosts import host_key

__all__ = ["CompiledRoute", "RouteMatch"]

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


class CompiledRoute(Generic[T]):
    """A compiled route: everything `match` needs, computed once."""

    __slots__ = (
        "config", "payload", "kind", "accepts", "host_key", "segments",
        "prefix", "params_at", "regex", "strip", "add", "key", "rank", "listeners", "conditions", "plain",
    )

    def __init__(self, config: RouteConfig, payload: T, position: int, regex_order: int = 0) -> None:
        self.config = config
        self.payload = payload
        self.rank = 0
        self.listeners = frozenset(config.listeners) if config.listeners is not None else None
        self.conditions = config.match
        self.kind, self.segments, self.prefix, self.params_at, self.regex = _parse_path(config.path)
        self.host_key, host_rank = host_key(config.host)
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
        #: No parameters and no rewrite: `bind` has nothing to compute.
        self.plain = not self.params_at and self.regex is None and self.strip is None and self.add is None
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
        if self.plain:
            return RouteMatch(self.config, self.payload, {}, path)
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


def _rewrite_prefix(value: Optional[str], key: str) -> Optional[str]:
    if value is None:
        return None
    try:
        prefix = normalize_path(value.encode("utf-8")).rstrip("/")
    except InvalidPath as e:
        raise ValueError(f"{key}: {e.message}") from None
    return prefix or None
