"""
CORS for a route, per the Fetch standard (https://fetch.spec.whatwg.org/#http-cors-protocol).

The stage runs first (order 100, before authentication):

* a **preflight** (``OPTIONS`` with ``Origin`` and
  ``Access-Control-Request-Method``) is answered by the gateway and never
  forwarded: 204 with the ``Access-Control-Allow-*`` headers when the
  origin, method and headers are allowed, else 403 with the JSON error body
  saying which one was refused (and no CORS headers, so the browser fails it);
* any other request goes on; its response (the upstream's, or an error the
  gateway answers, such as a 401 or 429, so the page can read it) gets
  ``Access-Control-Allow-Origin`` (the request's origin, or ``*``), ``-Allow-Credentials``
  and ``-Expose-Headers`` when the origin is allowed.  The upstream's own
  ``Access-Control-*`` headers are removed: the gateway owns CORS on the route.
* ``Vary: Origin`` is added whenever the answer depends on the origin, on
  every response, with or without ``Origin``, so shared caches keep them apart.

A route with ``cors`` accepts ``OPTIONS`` for preflights even when its
``methods`` do not list it; a plain ``OPTIONS`` (not a preflight) to such a
route still gets 405.
"""

from __future__ import annotations

import re
from typing import Any, FrozenSet, List, Optional, Pattern, Tuple

import attrs
from twisted.python.failure import Failure

from twistgate.config._node import Node
from twistgate.config.model import ConfigError, ConfigIssue, Location, RouteConfig
from twistgate.errors import Forbidden, GatewayError, MethodNotAllowed
from twistgate.messages import ProxyRequest, ProxyResponse, Response
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import BLIND, Policy
from twistgate.policies._checks import issues_of
from twistgate.errors import add_error_headers
from twistgate.fields import add_vary

CORS_KEYS = ("origins", "methods", "headers", "expose_headers", "credentials", "max_age")
#: Without ``methods``, a route with ``methods`` allows those; else these.
DEFAULT_METHODS = ("GET", "HEAD", "POST")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ORIGIN = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9._~%!$&'()*+,;=-]+)(?::(?P<port>\d{1,5}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_STATE_KEY = "cors"
_PREFLIGHT = "preflight"

_ACAO = b"Access-Control-Allow-Origin"
_ACAC = b"Access-Control-Allow-Credentials"
_ACEH = b"Access-Control-Expose-Headers"
_ACAM = b"Access-Control-Allow-Methods"
_ACAH = b"Access-Control-Allow-Headers"
_ACMA = b"Access-Control-Max-Age"
_UPSTREAM_CORS = (_ACAO, _ACAC, _ACEH, _ACAM, _ACAH, _ACMA)


@attrs.frozen(kw_only=True)
class CorsConfig:
    any_origin: bool = False
    exact_origins: FrozenSet[str] = frozenset()
    origin_patterns: Tuple[Pattern[str], ...] = ()  # wildcard subdomains and ~regex
    methods: Optional[Tuple[str, ...]] = None  # None: the route's methods, else DEFAULT_METHODS
    any_method: bool = False
    headers: Tuple[str, ...] = ()  # allowed request headers, as written
    any_header: bool = False
    expose_headers: Tuple[str, ...] = ()
    credentials: bool = False
    max_age: Optional[int] = None  # seconds
    location: Location = Location()


# -- config -----------------------------------------------------------------


def parse_cors(node: Node) -> Optional[CorsConfig]:
    fields = node.mapping(CORS_KEYS, required=("origins",))
    if fields is None:
        return None
    origins = fields.read("origins", _origins, None)
    methods = fields.read("methods", lambda n: _tokens(n, "an HTTP method like GET", upper=True), None)
    headers = fields.read("headers", lambda n: _tokens(n, "a header name like Content-Type"), ())
    expose = fields.read("expose_headers", lambda n: _tokens(n, "a header name like X-Request-Id"), ())
    credentials = fields.read("credentials", Node.boolean, False)
    max_age = fields.read("max_age", lambda n: n.duration(positive=False), None)
    if origins is None:
        return None
    any_origin, exact, patterns = origins
    if credentials and any_origin:
        fields["origins"].issue(
            "'*' cannot be combined with credentials: true (browsers refuse it); list the allowed origins"
        )
        return None
    if credentials and "*" in expose:
        fields["expose_headers"].issue(
            "'*' means a header named '*' when credentials are allowed; list the headers to expose"
        )
        return None
    return CorsConfig(
        any_origin=any_origin,
        exact_origins=exact,
        origin_patterns=patterns,
        methods=tuple(m for m in methods if m != "*") if methods is not None else None,
        any_method=methods is not None and "*" in methods,
        headers=tuple(h for h in headers if h != "*"),
        any_header="*" in headers,
        expose_headers=expose,
        credentials=credentials,
        max_age=int(max_age) if max_age is not None else None,
        location=node.location(at_key=True),
    )


def _origins(node: Node) -> Optional[Tuple[bool, FrozenSet[str], Tuple[Pattern[str], ...]]]:
    items = [node] if node.kind == "string" else node.sequence(non_empty=True)
    if not items:
        return None
    any_origin = False
    exact = set()
    patterns: List[Pattern[str]] = []
    for item in items:
        text = item.string()
        if text is None:
            return None
        text = text.strip()
        if text == "*":
            any_origin = True
        elif text.startswith("~"):
            try:
                patterns.append(re.compile(text[1:]))
            except re.error as e:
                item.issue(f"invalid regular expression {text[1:]!r}: {e}")
                return None
        elif text == "null":
            exact.add("null")
        else:
            origin = _config_origin(item, text)
            if origin is None:
                return None
            if origin[1]:
                patterns.append(origin[1])
            else:
                exact.add(origin[0])
    return any_origin, frozenset(exact), tuple(patterns)


def _config_origin(node: Node, text: str) -> Optional[Tuple[str, Optional[Pattern[str]]]]:
    """``https://app.example[:port]`` or ``https://*.example.com``, normalised."""
    lowered = text.lower()
    wildcard = "://*." in lowered
    candidate = lowered.replace("://*.", "://x.", 1) if wildcard else lowered
    match = _ORIGIN.fullmatch(candidate)
    if match is None:
        hint = " (an origin has no path: remove the trailing '/')" if lowered.endswith("/") else ""
        node.issue(
            f"expected an origin like https://app.example, https://*.example.com, '*' or ~regex, got {text!r}{hint}"
        )
        return None
    scheme, host, port = match.group("scheme"), match.group("host"), match.group("port")
    if port is not None and _DEFAULT_PORTS.get(scheme) == port:
        port = None  # browsers never send the default port
    suffix = f":{port}" if port else ""
    if not wildcard:
        return f"{scheme}://{host}{suffix}", None
    domain = host[2:]  # after "x."
    pattern = re.compile(
        rf"{re.escape(scheme)}://[a-z0-9-]+(?:\.[a-z0-9-]+)*\.{re.escape(domain)}{re.escape(suffix)}", re.IGNORECASE
    )
    return text, pattern


def _tokens(node: Node, what: str, *, upper: bool = False) -> Optional[Tuple[str, ...]]:
    items = node.sequence()
    if items is None:
        return None
    found: List[str] = []
    for item in items:
        text = item.string()
        if text is None:
            return None
        value = text.strip()
        if value != "*" and not _TOKEN.fullmatch(value):
            item.issue(f"expected {what} or '*', got {text!r}")
            return None
        value = value.upper() if upper else value
        if value.lower() not in (v.lower() for v in found):
            found.append(value)
    return tuple(found)


# -- the stage --------------------------------------------------------------


class CorsStage:
    """Answers preflights and marks responses for one route's allowed origins."""

    def __init__(self, config: CorsConfig, route: RouteConfig) -> None:
        self.config = config
        self.route_methods = route.methods
        self.options_listed = route.methods is None or "OPTIONS" in route.methods
        methods = config.methods
        if methods is None:
            methods = tuple(sorted(route.methods - {"OPTIONS"})) if route.methods else DEFAULT_METHODS
        self.methods = frozenset(methods)
        self.methods_header = ", ".join(methods).encode("ascii")
        self.headers = frozenset(h.lower() for h in config.headers)
        self.headers_header = ", ".join(config.headers).encode("ascii")
        self.expose_header = ", ".join(config.expose_headers).encode("ascii")
        self.max_age = b"%d" % config.max_age if config.max_age is not None else None
        # ACAO "*" is the same for every origin: only then is Vary: Origin needless.
        self.varies = not (config.any_origin and not config.credentials)

    # -- origins --------------------------------------------------------

    def allowed_origin(self, origin: bytes) -> bool:
        config = self.config
        if config.any_origin:
            return True
        try:
            text = origin.decode("ascii")
        except UnicodeDecodeError:
            return False
        if text in config.exact_origins:
            return True
        lowered = text.lower()
        if lowered != text and lowered in config.exact_origins:
            return True
        return any(pattern.fullmatch(text) for pattern in config.origin_patterns)

    def _origin_headers(self, origin: bytes) -> List[Tuple[bytes, bytes]]:
        config = self.config
        if config.any_origin and not config.credentials:
            headers = [(_ACAO, b"*")]
        else:
            headers = [(_ACAO, origin)]
        if config.credentials:
            headers.append((_ACAC, b"true"))
        return headers

    # -- hooks ------------------------------------------------------------

    @hookimpl
    def on_request(self, request: ProxyRequest) -> Optional[Response]:
        raw = request.headers.raw
        origins = raw.get(b"Origin")
        origin = origins[0] if origins is not None and len(origins) == 1 else None
        if request.method == b"OPTIONS":
            wanted = raw.get(b"Access-Control-Request-Method")
            if origin is not None and wanted:
                request.state[_STATE_KEY] = _PREFLIGHT
                return self._preflight(origin, wanted[0].strip(), raw.get(b"Access-Control-Request-Headers"))
            if not self.options_listed:
                # OPTIONS is accepted for preflights only; the route does not take it.
                allow = set(self.route_methods or ())
                if "GET" in allow:
                    allow.add("HEAD")
                raise MethodNotAllowed(sorted(allow))
        if origin is not None and self.allowed_origin(origin):
            request.state[_STATE_KEY] = origin
        return None

    def _preflight(self, origin: bytes, method: bytes, requested: Optional[List[bytes]]) -> Response:
        if not self.allowed_origin(origin):
            raise Forbidden(
                f"CORS preflight refused: origin {origin.decode('latin-1')!r} is not allowed.", code="cors_rejected"
            )
        method_s = method.decode("latin-1")
        if not _TOKEN.fullmatch(method_s):
            raise Forbidden("CORS preflight refused: invalid Access-Control-Request-Method.", code="cors_rejected")
        if not self.config.any_method and method_s not in self.methods:
            raise Forbidden(f"CORS preflight refused: method {method_s} is not allowed.", code="cors_rejected")
        names = _header_list(requested)
        if names is None:
            raise Forbidden("CORS preflight refused: invalid Access-Control-Request-Headers.", code="cors_rejected")
        if not self.config.any_header:
            refused = [name for name in names if name not in self.headers]
            if refused:
                raise Forbidden(
                    f"CORS preflight refused: header {refused[0]} is not allowed.", code="cors_rejected"
                )
        headers = self._origin_headers(origin)
        if self.config.any_method:
            headers.append((_ACAM, method))
        else:
            headers.append((_ACAM, self.methods_header))
        if self.config.any_header:
            if names:
                headers.append((_ACAH, ", ".join(names).encode("ascii")))
        elif self.headers_header:
            headers.append((_ACAH, self.headers_header))
        if self.max_age is not None:
            headers.append((_ACMA, self.max_age))
        headers.append((b"Vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"))
        return Response(status=204, headers=headers)

    @hookimpl
    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> None:
        state = request.state.get(_STATE_KEY)
        if state == _PREFLIGHT:
            return
        raw = response.headers.raw
        for name in _UPSTREAM_CORS:
            raw.pop(name, None)
        if state is not None:
            for name, value in self._origin_headers(state):
                raw[name] = [value]
            if self.expose_header:
                raw[_ACEH] = [self.expose_header]
        if self.varies:
            add_vary(raw, b"Origin")

    @hookimpl
    def on_error(self, request: ProxyRequest, failure: Failure) -> None:
        """Errors the gateway answers (401, 429...) stay readable by the page."""
        state = request.state.get(_STATE_KEY)
        if not isinstance(failure.value, GatewayError) or state == _PREFLIGHT:
            return
        headers: List[Tuple[bytes, bytes]] = []
        if state is not None:
            headers = self._origin_headers(state)
            if self.expose_header:
                headers.append((_ACEH, self.expose_header))
        if self.varies:
            headers.append((b"Vary", b"Origin"))
        if headers:
            add_error_headers(failure, headers)


def _header_list(values: Optional[List[bytes]]) -> Optional[List[str]]:
    """Access-Control-Request-Headers as lower-case names; None if malformed."""
    names: List[str] = []
    for value in values or ():
        for item in value.split(b","):
            name = item.strip().decode("latin-1").lower()
            if not name:
                continue
            if not _TOKEN.fullmatch(name):
                return None
            if name not in names:
                names.append(name)
    return names


def cors_stage(config: CorsConfig, route: RouteConfig) -> CorsStage:
    """Checks that need the route (its methods), then the stage."""
    if config.methods is not None and route.methods is not None:
        missing = sorted(set(config.methods) - set(route.methods) - {"HEAD", "OPTIONS"})
        if missing:
            raise ConfigError(
                [
                    ConfigIssue(
                        location=attrs.evolve(config.location, path=config.location.path + ".methods"),
                        message=f"the route does not accept {', '.join(missing)}; "
                        f"CORS can only allow methods of the route ({', '.join(sorted(route.methods))})",
                    )
                ]
            )
    return CorsStage(config, route)


def _build(route: RouteConfig, services: Any) -> CorsStage:
    return cors_stage(route.policies["cors"], route)


def _validate(route: RouteConfig, config: Any) -> List[ConfigIssue]:
    return issues_of(cors_stage, route.policies["cors"], route)


#: CORS: preflights answered here, response headers per the Fetch rules.
#: (It reads ``Origin`` and ``Access-Control-Request-*``, and sets its own fields on the way out.)
POLICY = Policy(name="cors", key="cors", parse=parse_cors, build=_build, validate=_validate, sight=BLIND)
