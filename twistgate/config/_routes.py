"""
``routes``: which requests go to which upstream.  Paths, hosts and methods
are checked here so the router can trust them.
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from typing import Collection, Dict, FrozenSet, List, Optional, Tuple

from twistgate.config._issues import closest, suggest
from twistgate.config._node import Fields, Node
from twistgate.config import _edge, sections
from twistgate.config._pending import PENDING_KEYS
from twistgate.config._sections import plugin_sections
from twistgate.config.model import RouteConfig

ROUTE_KEYS = (
    "name", "path", "upstream", "methods", "host", "priority",
    "strip_prefix", "add_prefix", "preserve_host", "timeout", "plugins",
) + _edge.EDGE_KEYS  # fmt: skip
#: Keys `defaults:` cannot give: they name one route.
PER_ROUTE_ONLY = ("name", "path")
STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_PARAMETER = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def routes(
    node: Node, upstream_names: Optional[Collection[str]], defaults: Optional[Fields] = None
) -> Tuple[RouteConfig, ...]:
    """
    :param upstream_names: the names under ``upstreams``, or ``None`` when
        that section was itself unreadable (then references are not checked,
        to avoid a cascade of follow-on errors).
    :param defaults: the keys of ``defaults:`` (`defaults_fields`), given to
        every route that does not set them.
    """
    found: List[RouteConfig] = []
    first_line: Dict[str, int] = {}
    for index, item in enumerate(node.sequence() or ()):
        one = route(index, item, upstream_names, defaults)
        if one is None:
            continue
        if one.name in first_line:
            item.issue(f"duplicate route name {one.name!r} (first on line {first_line[one.name]})")
        first_line.setdefault(one.name, item.line)
        found.append(one)
    return tuple(found)


def defaults_fields(node: Node) -> Optional[Fields]:
    """``defaults:``: any route key but ``name`` and ``path``, checked once here."""
    known = tuple(k for k in ROUTE_KEYS if k not in PER_ROUTE_ONLY) + tuple(sections.route_sections())
    return node.mapping(known, pending=PENDING_KEYS["route"] - set(sections.route_sections()))


def read_defaults(fields: Fields, upstream_names: Optional[Collection[str]]) -> Optional[RouteConfig]:
    """The defaults as one route (name "defaults", path ``/*``), for the gateway's own answers."""
    return _route_config(-1, fields.owner, fields, upstream_names, name="defaults", path="/*", partial=True)


def route(
    index: int, node: Node, upstream_names: Optional[Collection[str]], defaults: Optional[Fields] = None
) -> Optional[RouteConfig]:
    fields = node.mapping(
        ROUTE_KEYS + tuple(sections.route_sections()),
        required=("name", "path"),
        pending=PENDING_KEYS["route"] - set(sections.route_sections()),
    )
    if fields is None:
        return None
    if defaults is not None:
        own_terminal = any(key in fields for key in _edge.TERMINAL_KEYS)
        for key, value in defaults.nodes.items():
            # Replaced as a whole by the route's own key; what the route does
            # (upstream, split, redirect, respond) is one choice, never mixed.
            if key not in fields and not (own_terminal and key in _edge.TERMINAL_KEYS):
                fields.nodes[key] = value
    terminal = [key for key in _edge.TERMINAL_KEYS if key in fields]
    if not terminal:
        # (or split, redirect or respond; a misspelt one is reported as such)
        if not set(fields.suggested) & set(_edge.TERMINAL_KEYS):
            node.issues.add(node.location(at_key=True).line, f"{node.path}.upstream", "required key 'upstream' is missing")
    elif len(terminal) > 1:
        fields[terminal[1]].issue(
            f"a route has one of 'upstream', 'split', 'redirect' or 'respond'; this one has {' and '.join(map(repr, terminal))}",
            at_key=True,
        )
    config = _route_config(index, node, fields, upstream_names)
    return config if len(terminal) == 1 else None


def _route_config(
    index: int,
    node: Node,
    fields: Fields,
    upstream_names: Optional[Collection[str]],
    *,
    name: Optional[str] = None,
    path: Optional[str] = None,
    partial: bool = False,
) -> Optional[RouteConfig]:
    if name is None:
        name = fields.read("name", Node.string, None)
    if path is None:
        path = fields.read("path", lambda n: n.convert(check_path, "a path like /api/*"), None)
    upstream = fields.read("upstream", lambda n: upstream_reference(n, upstream_names), None)
    split = fields.read("split", lambda n: _edge.parse_split(n, lambda u: upstream_reference(u, upstream_names)), ())
    sticky = fields.read("sticky", _edge.parse_sticky, None)
    redirect = fields.read("redirect", _edge.parse_redirect, None)
    respond = fields.read("respond", _edge.parse_respond, None)
    if sticky is not None and (redirect is not None or respond is not None):
        fields["sticky"].issue("'sticky' pins clients to targets: it needs 'upstream' or 'split'", at_key=True)
    config = RouteConfig(
        name=name or "",
        path=path or "",
        upstream=upstream or "",
        listeners=fields.read("listeners", _edge.parse_listeners, None),
        match=fields.read("match", _edge.parse_match, None),
        split=split,
        sticky=sticky,
        redirect=redirect,
        respond=respond,
        max_request_body=fields.read("max_request_body", lambda n: n.size(min=1), None),
        access_log=fields.read("access_log", Node.boolean, True),
        methods=fields.read("methods", methods, None),
        host=fields.read("host", lambda n: n.convert(check_host, "a host name like api.example.com"), None),
        priority=fields.read("priority", Node.integer, 0),
        strip_prefix=fields.read("strip_prefix", prefix, None),
        add_prefix=fields.read("add_prefix", prefix, None),
        preserve_host=fields.read("preserve_host", Node.boolean, False),
        timeout=fields.read("timeout", Node.duration, None),
        plugins=fields.read("plugins", plugin_sections, ()),
        policies=sections.read(fields, sections.route_sections()),
        index=index,
        location=node.location(),
    )
    complete = upstream or split or redirect is not None or respond is not None
    return config if name and path and (complete or partial) else None


def upstream_reference(node: Node, names: Optional[Collection[str]]) -> Optional[str]:
    name = node.string()
    if name is None or names is None or name in names:
        return name
    if not names:
        node.issue(f"unknown upstream {name!r}: no upstreams are defined (add it under 'upstreams')")
    else:
        node.issue(f"unknown upstream {name!r}{suggest(name, names)}")
    return None


def check_path(text: str) -> str:
    """
    ``/exact``, ``/prefix/*``, ``/items/{id}`` or ``~regex``.

    :raises ValueError: saying which rule the path breaks.
    """
    if text.startswith("~"):
        if len(text) == 1:
            raise ValueError("a regex path needs a pattern after '~', like ~^/v[0-9]+/")
        try:
            re.compile(text[1:])
        except re.error as e:
            raise ValueError(f"invalid regular expression {text[1:]!r}: {e}") from None
        return text
    if not text.startswith("/"):
        raise ValueError(f"a path must start with '/' (or '~' for a regex), got {text!r}")
    if re.search(r"[?#\s]", text):
        raise ValueError(f"a path must not contain '?', '#' or whitespace, got {text!r}")
    body = text[:-2] if text.endswith("/*") else text
    if "*" in body:
        raise ValueError(f"'*' is only allowed as a trailing '/*' (a prefix match), got {text!r}")
    seen: List[str] = []
    for segment in body.split("/"):
        if "{" not in segment and "}" not in segment:
            continue
        match = _PARAMETER.fullmatch(segment)
        if match is None:
            raise ValueError(f"a parameter must be a whole segment like /{{id}}, got {segment!r} in {text!r}")
        parameter = match.group(1)
        if not _IDENTIFIER.fullmatch(parameter):
            raise ValueError(f"invalid parameter name {parameter!r}; use letters, digits and _")
        if parameter in seen:
            raise ValueError(f"parameter {{{parameter}}} appears twice in {text!r}")
        seen.append(parameter)
    return text


def check_host(text: str) -> Optional[str]:
    """
    An exact host name, ``*.example.com`` or an IPv6 literal in brackets,
    lower-cased, without a port or trailing dot.  ``*`` alone means any host
    and gives ``None``, as if the key were left out.
    """
    host = text.strip().lower()
    if host == "*":
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            ip_address(host[1:-1])
        except ValueError:
            raise ValueError(f"expected an IPv6 address in brackets like [::1], got {text!r}") from None
        return host
    if ":" in host:
        raise ValueError(f"a route's host must not include a port (IPv6 addresses go in brackets), got {text!r}")
    host = host[:-1] if host.endswith(".") else host
    name = host[2:] if host.startswith("*.") else host
    if not _HOSTNAME.fullmatch(name):
        raise ValueError(f"expected a host name like api.example.com or *.example.com, got {text!r}")
    return host


def methods(node: Node) -> Optional[FrozenSet[str]]:
    """
    Method tokens, upper-cased.  A near miss of a standard method (``GTE``)
    is refused; any other token is allowed as an extension method.
    """
    items = node.sequence()
    if items is None:
        return None
    if not items:
        node.issue("must list at least one method; leave 'methods' out to allow any")
        return None
    found = set()
    for item in items:
        text = item.string()
        if text is None:
            continue
        method = text.strip().upper()
        if not _TOKEN.fullmatch(method):
            item.issue(f"expected an HTTP method like GET, got {text!r}")
            continue
        if method not in STANDARD_METHODS and closest(method, STANDARD_METHODS):
            item.issue(f"unknown method {text!r}{suggest(method, STANDARD_METHODS)}")
            continue
        found.add(method)
    return frozenset(found)


def prefix(node: Node) -> Optional[str]:
    text = node.string()
    if text is not None and not text.startswith("/"):
        node.issue(f"must start with '/', got {text!r}")
        return None
    return text
