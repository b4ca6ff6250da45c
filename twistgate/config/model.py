"""
Typed, frozen configuration objects.

Everything a running gateway needs is validated once, at load time, into these
values; nothing on the request path parses configuration.  Durations are
seconds (float), sizes are bytes (int).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any, Mapping, Optional, Tuple, Union

import attrs

if TYPE_CHECKING:
    from twistgate.config._edge import MatchConfig, RedirectConfig, RespondConfig, SplitArm, StickyConfig

IPNetwork = Union[IPv4Network, IPv6Network]

KiB = 1024
MiB = 1024 * 1024


@attrs.frozen(kw_only=True)
class Location:
    """Where a value was written: used to point errors at the user's file."""

    file: str = "<config>"
    line: int = 0
    path: str = ""
    column: int = 0  # set for YAML syntax errors, where the line alone is not enough

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.line and self.column:
            where += f":{self.column}"
        return f"{where}: {self.path}" if self.path else where


#: ``scheme://userinfo@`` inside a message: the user stays, a password (or
#: a bare token in the user part) does not.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^\s/@'\"]*)@")


def _hide_credentials(message: str) -> str:
    """A message with the credentials of every URL in it replaced by ``***`` (an issue echoes what was written)."""

    def hidden(match: "re.Match[str]") -> str:
        user, colon, _ = match.group(2).partition(":")
        return match.group(1) + (f"{user}:***" if colon else "***") + "@"

    return _USERINFO.sub(hidden, message) if "@" in message else message


@attrs.frozen(kw_only=True)
class ConfigIssue:
    location: Location
    message: str = attrs.field(converter=_hide_credentials)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class ConfigError(ValueError):
    """
    The configuration is invalid.  Carries every issue found, each with file,
    line and key path, so a user can fix them all in one go.
    """

    def __init__(self, issues: "list[ConfigIssue] | tuple[ConfigIssue, ...]"):
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@attrs.frozen
class Rate:
    """``count`` events per ``per`` seconds, as in ``100/min``."""

    count: int
    per: float  # seconds


@attrs.frozen(kw_only=True)
class ListenerCertificate:
    """One more certificate of a TLS listener, chosen by SNI (twistgate.tls)."""

    certificate: str  # PEM path, chain allowed
    private_key: str = attrs.field(repr=False)  # PEM path
    location: Location = attrs.field(default=Location(), eq=False)


@attrs.frozen(kw_only=True)
class SessionResumptionConfig:
    """
    ``listeners[].tls.session_resumption``: resuming TLS sessions without a
    full handshake (twistgate.tls).  The ticket key (and the session cache)
    is replaced every `ticket_key_rotation`.
    """

    enabled: bool = True
    cache: bool = True  # server-side session cache (TLS 1.2 session IDs, TLS 1.3 stateful tickets)
    tickets: bool = True  # stateless tickets (RFC 5077, TLS 1.3 PSK tickets)
    lifetime: float = 3600.0  # a session or ticket is resumable this long
    ticket_key_rotation: float = 12 * 3600.0


#: Resumption turned off (mTLS listeners, unless asked: every connection verifies its client).
NO_RESUMPTION = SessionResumptionConfig(enabled=False, cache=False, tickets=False)


@attrs.frozen(kw_only=True)
class ListenerTLSConfig:
    certificate: str
    private_key: str = attrs.field(repr=False)
    client_ca: Optional[str] = None
    client_certificate: str = "none"  # none | optional | required
    # Added with TLS listeners (twistgate.tls): more certificates chosen by
    # SNI, the lowest TLS version ("1.2" | "1.3"), HTTP/2 over ALPN, and where
    # the block was written (certificate files are read when the listener is
    # built and on reload, and their errors point here).
    certificates: Tuple[ListenerCertificate, ...] = ()
    min_version: str = "1.2"
    http2: bool = True
    # Key exchange groups offered, in preference order (OpenSSL names).  The
    # default is Mozilla's "intermediate" set; OpenSSL's own default also
    # offers X448, P-521 and finite-field groups.
    groups: Tuple[str, ...] = ("X25519", "P-256", "P-384")
    location: Location = attrs.field(default=Location(), eq=False)
    session_resumption: Optional[SessionResumptionConfig] = None  # None: `resumption`'s default

    @property
    def resumption(self) -> SessionResumptionConfig:
        """
        The settings in force: as written, else on, except where client
        certificates are verified (each connection then verifies its client
        afresh unless ``session_resumption`` asks otherwise).
        """
        if self.session_resumption is not None:
            return self.session_resumption
        return NO_RESUMPTION if self.client_certificate != "none" else SessionResumptionConfig()


@attrs.frozen(kw_only=True)
class ListenerConfig:
    name: str
    endpoint: str
    tls: Optional[ListenerTLSConfig] = None
    # Where `endpoint` was written, for errors about it (address clashes).
    location: Location = attrs.field(default=Location(), eq=False)
    # Cleartext HTTP/2 with prior knowledge (twistgate.engine.protocol_switch).
    h2c: bool = False
    redirect_https: Optional[int] = None  # every request answers 308 to https on this port
    health_path: Optional[str] = None  # an unauthenticated JSON liveness answer at this exact path (ops.probes)


@attrs.frozen(kw_only=True)
class AdminConfig:
    endpoint: str
    token: Optional[str] = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class LimitsConfig:
    """Edge-safe defaults, close to Envoy's edge profile and NGINX's buffers."""

    max_request_body: int = 10 * MiB  # 413
    max_header_bytes: int = 64 * KiB  # 431 (request line + all header lines)
    max_headers: int = 100  # 431
    max_request_line: int = 8 * KiB  # 414
    header_timeout: float = 10.0  # client_header_timeout: 408 when the request head is not complete in time
    body_timeout: float = 30.0  # client_body_timeout: 408 when no request-body byte comes for this long
    request_buffering: bool = False  # read the whole body (up to max_request_body) before choosing a target
    request_timeout: float = 60.0  # default whole-request upstream timeout (504)
    idle_timeout: float = 300.0  # keep-alive connections with nothing to do are closed
    drain_timeout: float = 30.0  # on shutdown, in-flight requests get this long
    max_connections: Optional[int] = None  # client connections open at once, every listener together


@attrs.frozen(kw_only=True)
class TargetConfig:
    url: str
    scheme: str  # "http" | "https"
    host: str
    port: int
    weight: int = 1
    srv: bool = False  # `host` is a DNS SRV name: addresses and ports come from DNS (port is 0)
    backup: bool = False  # used only while no primary target is available


@attrs.frozen(kw_only=True)
class UpstreamTimeoutsConfig:
    connect: float = 5.0
    read: float = 30.0  # time to the response head, and between body chunks
    total: Optional[float] = None  # every attempt and backoff until the head; None: the route's timeout
    write: Optional[float] = None  # the upstream accepting none of the request body for this long: 504


@attrs.frozen(kw_only=True)
class PoolConfig:
    max_idle_per_target: int = 128  # HTTPConnectionPool.maxPersistentPerHost
    # Below common upstream keep-alive timeouts (Node, uvicorn, gunicorn, Apache: 5 s), so the
    # gateway, not the upstream, closes an idle pooled connection (issue 18).
    idle_timeout: float = 4.0  # HTTPConnectionPool.cachedConnectionTimeout


@attrs.frozen(kw_only=True)
class UpstreamConfig:
    name: str
    targets: Tuple[TargetConfig, ...]
    balance: str = "round_robin"
    timeouts: UpstreamTimeoutsConfig = UpstreamTimeoutsConfig()
    pool: PoolConfig = PoolConfig()
    # http1 | h2 (TLS with ALPN) | h2c (cleartext, prior knowledge): twistgate.engine.http2_client
    protocol: str = "http1"
    # Typed configs of extension sections (health_check, retry, tls...), by
    # key; see twistgate.config.sections.
    policies: Mapping[str, Any] = attrs.field(factory=dict)
    location: Location = Location()


@attrs.frozen(kw_only=True)
class PluginSection:
    """
    One plugin's own settings.  When the plugin declares its options (an
    ``Options`` class on its factory, see `twistgate.plugins.options`), the
    loader has validated and converted them, and `declared` is that
    declaration; otherwise they are as written (plain dicts, lists and
    scalars) and the factory validates them when it is built.  `location`
    lets errors point at the file and line.
    """

    name: str
    enabled: bool = True
    options: Mapping[str, Any] = attrs.field(factory=dict)
    location: Location = Location()
    declared: Any = None  # the OptionsSpec that converted `options`, or None


@attrs.frozen(kw_only=True)
class RouteConfig:
    name: str
    path: str  # /exact, /prefix/*, /items/{id}, ~^/regex$
    upstream: str  # "" when the route splits, redirects or responds itself
    methods: Optional[frozenset] = None  # of upper-case str; None = any
    host: Optional[str] = None  # exact or *.example.com; None = any
    priority: int = 0
    strip_prefix: Optional[str] = None
    add_prefix: Optional[str] = None
    preserve_host: bool = False  # send the client's Host upstream instead of the target's
    timeout: Optional[float] = None  # whole request; default limits.request_timeout
    plugins: Tuple[PluginSection, ...] = ()
    # Typed configs of extension sections (auth, rate_limit, cors...), by key.
    policies: Mapping[str, Any] = attrs.field(factory=dict)
    index: int = 0  # position in the file: the last tie-breaker
    location: Location = Location()
    # Edge routing (twistgate.config._edge).
    listeners: Optional[Tuple[str, ...]] = None  # None: every listener serves the route
    match: "Optional[MatchConfig]" = None  # header/cookie/query conditions, all must hold
    split: "Tuple[SplitArm, ...]" = ()  # weighted upstreams instead of `upstream`
    sticky: "Optional[StickyConfig]" = None
    redirect: "Optional[RedirectConfig]" = None
    respond: "Optional[RespondConfig]" = None
    max_request_body: Optional[int] = None  # None: limits.max_request_body
    access_log: bool = True

    @property
    def upstream_names(self) -> Tuple[str, ...]:
        """Every upstream the route may send to (none for redirect and respond routes)."""
        if self.split:
            return tuple(arm.upstream for arm in self.split)
        return (self.upstream,) if self.upstream else ()


@attrs.frozen(kw_only=True)
class DemoConfig:
    """In-process demo backends so a first run answers at once."""

    endpoint: str = "tcp:5001:interface=127.0.0.1"


@attrs.frozen(kw_only=True)
class GatewayConfig:
    source: Optional[str] = None  # the file it was read from (reload reads it again)
    listeners: Tuple[ListenerConfig, ...]
    admin: Optional[AdminConfig] = None
    limits: LimitsConfig = LimitsConfig()
    trusted_proxies: Tuple[IPNetwork, ...] = ()
    upstreams: Mapping[str, UpstreamConfig] = attrs.field(factory=dict)
    routes: Tuple[RouteConfig, ...] = ()
    plugins: Tuple[PluginSection, ...] = ()
    demo: Optional[DemoConfig] = None
    # The HTTP/1.1 engine of the listeners and the forwarded hop:
    # "httptools" (twistgate.engine) or "twisted" (twisted.web, kept for one release).
    engine: str = "httptools"
    # Typed configs of top-level extension sections (admin, auth...), by key.
    sections: Mapping[str, Any] = attrs.field(factory=dict)
    # `defaults:` read as a route (name "defaults"): what the gateway's own
    # answers (404, 413, 431...) take from it; routes already have it merged in.
    defaults: Optional[RouteConfig] = None
