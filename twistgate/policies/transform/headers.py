"""
Header transformations of a route (order 402): ``remove`` / ``rename`` /
``set`` / ``add`` (in that order) with substitutions, on the request and on
the response; and the helpers the other traffic stages share (templates,
headers on gateway errors, ``Vary``).  The path and query edits are in
`twistgate.policies.transform.request`, the response presets in
`twistgate.policies.transform.response`.

Substitutions (``{id}``, ``{consumer}``, ``{request_id}``...) are compiled
into `Template`s when the route is built; per request they are a few string
joins.  A value that needs something the request does not have (no
consumer, an unmatched parameter) is not written: a ``set`` then removes the
header, so a client can never supply it itself.  Substituted text never
carries control characters into a header.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

import attrs
from twisted.python.failure import Failure
from twistgate.headers import canonical_name

from twistgate.config._node import Node
from twistgate.config.model import ConfigError, ConfigIssue, Location, RouteConfig
from twistgate import errors, fields
from twistgate.policies._checks import issues_of
from twistgate.errors import GatewayError
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.placeholders import Part, split_placeholders
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import Policy

#: Values every template may use besides the route's ``{param}`` segments.
BUILTINS = ("consumer", "request_id", "client_ip", "host", "method")
#: Framing and connection headers belong to the gateway and the client.
MANAGED_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
)
OPS = ("remove", "rename", "set", "add")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_canonical = canonical_name


# -- templates ---------------------------------------------------------------


@attrs.frozen
class Template:
    """Literal text and ``{name}`` references, parsed once."""

    parts: Tuple[Part, ...]  # a str is literal, a 1-tuple names a value
    text: str

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(part[0] for part in self.parts if isinstance(part, tuple))

    def render(self, request: ProxyRequest) -> Optional[str]:
        """The text for this request, or None if a value is missing."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = _value(request, part[0])
            if value is None:
                return None
            out.append(value)
        return "".join(out)


def _value(request: ProxyRequest, name: str) -> Optional[str]:
    if name == "consumer":
        return str(request.consumer) if request.consumer is not None else None
    if name == "request_id":
        return request.request_id
    if name == "client_ip":
        return request.client_ip
    if name == "host":
        return request.host
    if name == "method":
        return request.method.decode("latin-1")
    return request.params.get(name)


def template(node: Node, *, what: str = "value") -> Optional[Template]:
    text = node.string(empty_ok=True)
    if text is None:
        return None
    try:
        parts = split_placeholders(text)
    except ValueError as error:
        node.issue(str(error))
        return None
    if any(isinstance(p, str) and _CONTROL.search(p) for p in parts):
        node.issue(f"a header {what} must not contain control characters")
        return None
    return Template(parts=parts, text=text)


def _clean(value: str) -> bytes:
    """Header bytes from substituted text: UTF-8, control characters dropped."""
    return _CONTROL.sub("", value).encode("utf-8")


def route_params(route: RouteConfig) -> Tuple[str, ...]:
    """The ``{param}`` names a route's path gives (segments or regex named groups)."""
    if route.path.startswith("~"):
        try:
            return tuple(re.compile(route.path[1:]).groupindex)
        except re.error:
            return ()
    return tuple(_PATH_PARAM.findall(route.path))


def check_templates(templates: List[Tuple[Template, Location]], route: RouteConfig) -> None:
    """Every ``{name}`` must be a built-in or one of the route's parameters."""
    params = route_params(route)
    issues = []
    for tpl, location in templates:
        for name in tpl.names:
            if name in BUILTINS and name in params:
                issues.append(
                    ConfigIssue(
                        location=location,
                        message=f"{{{name}}} is both a parameter of the route's path and a built-in value; "
                        "rename the path parameter",
                    )
                )
            elif name not in BUILTINS and name not in params:
                known = ", ".join(f"{{{n}}}" for n in BUILTINS + params)
                issues.append(ConfigIssue(location=location, message=f"unknown substitution {{{name}}}; known: {known}"))
    if issues:
        raise ConfigError(issues)


# -- headers: {request: {...}, response: {...}} -------------------------------


@attrs.frozen(kw_only=True)
class HeaderOps:
    remove: Tuple[str, ...] = ()
    rename: Tuple[Tuple[str, str], ...] = ()
    set: Tuple[Tuple[str, Template], ...] = ()
    add: Tuple[Tuple[str, Template], ...] = ()
    locations: Tuple[Tuple[Template, Location], ...] = ()


@attrs.frozen(kw_only=True)
class HeadersConfig:
    request: Optional[HeaderOps] = None
    response: Optional[HeaderOps] = None
    location: Location = Location()


def parse_headers(node: Node) -> Optional[HeadersConfig]:
    fields = node.mapping(("request", "response"))
    if fields is None:
        return None
    request = fields.read("request", lambda n: _header_ops(n, "request"), None)
    response = fields.read("response", lambda n: _header_ops(n, "response"), None)
    if ("request" in fields and request is None) or ("response" in fields and response is None):
        return None
    return HeadersConfig(request=request, response=response, location=node.location(at_key=True))


def _header_name(node: Node, side: str) -> Optional[str]:
    text = node.string()
    if text is None:
        return None
    if not _TOKEN.fullmatch(text):
        node.issue(f"expected a header name like X-Gateway, got {text!r}")
        return None
    if text.lower() in MANAGED_HEADERS or (side == "request" and text.lower() == "host"):
        hint = " (use the route's preserve_host)" if text.lower() == "host" else ""
        node.issue(f"{text} is managed by the gateway and cannot be transformed{hint}")
        return None
    return text


def _header_key(key: str, value: Node, side: str) -> Optional[str]:
    if not _TOKEN.fullmatch(key):
        value.issue(f"expected a header name like X-Gateway, got {key!r}", at_key=True)
        return None
    if key.lower() in MANAGED_HEADERS or (side == "request" and key.lower() == "host"):
        value.issue(f"{key} is managed by the gateway and cannot be transformed", at_key=True)
        return None
    return key


def _header_ops(node: Node, side: str) -> Optional[HeaderOps]:
    fields = node.mapping(OPS)
    if fields is None:
        return None
    ok = True
    remove: List[str] = []
    rename: List[Tuple[str, str]] = []
    sets: List[Tuple[str, Template]] = []
    adds: List[Tuple[str, Template]] = []
    locations: List[Tuple[Template, Location]] = []
    if "remove" in fields:
        for item in fields["remove"].sequence() or ():
            name = _header_name(item, side)
            ok = ok and name is not None
            if name is not None:
                remove.append(name)
    if "rename" in fields:
        for key, value in fields["rename"].entries() or ():
            old = _header_key(key, value, side)
            new = _header_name(value, side)
            if old is None or new is None:
                ok = False
            else:
                rename.append((old, new))
    for op, target in (("set", sets), ("add", adds)):
        if op not in fields:
            continue
        for key, value in fields[op].entries() or ():
            name = _header_key(key, value, side)
            values = value.sequence() if (op == "add" and value.kind == "list") else [value]
            for item in values or ():
                tpl = template(item)
                if name is None or tpl is None:
                    ok = False
                    continue
                target.append((name, tpl))
                locations.append((tpl, item.location()))
    if not ok:
        return None
    return HeaderOps(
        remove=tuple(remove), rename=tuple(rename), set=tuple(sets), add=tuple(adds), locations=tuple(locations)
    )


class _CompiledOps:
    """HeaderOps with names in Twisted's canonical form, applied to a raw header dict."""

    __slots__ = ("remove", "rename", "set", "add")

    def __init__(self, ops: HeaderOps) -> None:
        self.remove = tuple(_canonical(n.encode("ascii")) for n in ops.remove)
        self.rename = tuple((_canonical(o.encode("ascii")), _canonical(n.encode("ascii"))) for o, n in ops.rename)
        grouped: Dict[bytes, List[Template]] = {}
        for name, tpl in ops.set:
            grouped.setdefault(_canonical(name.encode("ascii")), []).append(tpl)
        self.set = tuple(grouped.items())
        self.add = tuple((_canonical(n.encode("ascii")), tpl) for n, tpl in ops.add)

    def apply(self, raw: Dict[bytes, List[bytes]], request: ProxyRequest) -> None:
        for name in self.remove:
            raw.pop(name, None)
        for old, new in self.rename:
            values = raw.pop(old, None)
            if values:
                raw[new] = raw.get(new, []) + values
        for name, templates in self.set:
            rendered = [tpl.render(request) for tpl in templates]
            values = [_clean(v) for v in rendered if v is not None]
            if values:
                raw[name] = values
            else:
                raw.pop(name, None)  # never leave a client's own value in place
        for name, tpl in self.add:
            value = tpl.render(request)
            if value is not None:
                values = raw.setdefault(name, [])
                cleaned = _clean(value)
                if cleaned not in values:  # idempotent: a replayed (cached) response is not added to twice
                    values.append(cleaned)


class HeadersStage:
    """
    ``headers.request`` on the way up, ``headers.response`` on the way back.
    Errors the gateway answers itself get the response ``set`` and ``add``
    headers too (a header the error already has is kept).
    """

    def __init__(self, config: HeadersConfig) -> None:
        self.request = _CompiledOps(config.request) if config.request else None
        self.response = _CompiledOps(config.response) if config.response else None

    @hookimpl
    def on_request(self, request: ProxyRequest) -> None:
        if self.request is not None:
            self.request.apply(request.headers.raw, request)

    @hookimpl
    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> None:
        if self.response is not None:
            self.response.apply(response.headers.raw, request)

    @hookimpl
    def on_error(self, request: ProxyRequest, failure: Failure) -> None:
        ops = self.response
        if ops is None or not isinstance(failure.value, GatewayError) or not (ops.set or ops.add):
            return
        raw: Dict[bytes, List[bytes]] = {}
        ops.apply(raw, request)
        add_error_headers(failure, [(name, value) for name, values in raw.items() for value in values])


# Shared with the other policies from their own homes.
add_error_headers = errors.add_error_headers
add_vary = fields.add_vary


def headers_stage(config: HeadersConfig, route: RouteConfig) -> HeadersStage:
    templates = [*(config.request.locations if config.request else ()), *(config.response.locations if config.response else ())]
    check_templates(list(templates), route)
    return HeadersStage(config)


__all__ = [
    "HeadersConfig",
    "HeadersStage",
    "Template",
    "add_error_headers",
    "add_vary",
    "check_templates",
    "headers_stage",
    "parse_headers",
    "template",
]


def _build(route: RouteConfig, services: Any) -> HeadersStage:
    return headers_stage(route.policies["headers"], route)


def _validate(route: RouteConfig, config: Any) -> List[ConfigIssue]:
    return issues_of(headers_stage, route.policies["headers"], route)


#: Header edits on the request and the response.
POLICY = Policy(name="headers", key="headers", parse=parse_headers, build=_build, validate=_validate)
