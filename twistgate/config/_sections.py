"""
The small sections: listeners, limits, trusted proxies, plugins and demo.
One function per section, each reading a `Node` and returning model values.
"""

from __future__ import annotations

import re
from ipaddress import ip_network
from typing import Any, Dict, List, Optional, Tuple

import attrs

from twistgate.config._node import Fields, Node
from twistgate.config.endpoints import EndpointError, parse_server_endpoint, suggest_endpoint
from twistgate.config.model import (
    DemoConfig,
    IPNetwork,
    LimitsConfig,
    ListenerCertificate,
    ListenerConfig,
    ListenerTLSConfig,
    NO_RESUMPTION,
    PluginSection,
    SessionResumptionConfig,
)

LISTENER_KEYS = ("name", "endpoint", "tls", "h2c", "redirect_https", "health_path")
TLS_KEYS = (
    "certificate",
    "private_key",
    "client_ca",
    "client_certificate",
    "certificates",
    "min_version",
    "http2",
    "groups",
    "session_resumption",
)
SESSION_RESUMPTION_KEYS = ("cache", "tickets", "lifetime", "ticket_key_rotation")
TLS_CERTIFICATE_KEYS = ("certificate", "private_key")
CLIENT_CERTIFICATE = ("none", "optional", "required")
TLS_MIN_VERSIONS = ("1.2", "1.3")
LIMIT_SIZES = ("max_request_body", "max_header_bytes", "max_request_line")
LIMIT_DURATIONS = ("request_timeout", "idle_timeout", "drain_timeout")
LIMIT_KEYS = LIMIT_SIZES + LIMIT_DURATIONS + ("max_headers", "client_header_timeout", "header_timeout",
                                              "client_body_timeout", "request_buffering", "max_connections")
DEMO_KEYS = ("endpoint",)


def server_endpoint(node: Node) -> Optional[str]:
    """
    A Twisted server endpoint string, read now (twistgate.config.endpoints,
    nothing is built) so that a typo or an impossible port fails the load,
    not the start.
    """
    if node.kind in ("integer", "number"):
        hint = suggest_endpoint(node._constructed())
        example = hint or "tcp:8080"
        node.issue(f"expected an endpoint string like {example!r}, got {node.kind} {node.node.value}; did you mean {example!r}?")
        return None
    text = node.string()
    if text is None:
        return None
    try:
        parse_server_endpoint(text)
    except EndpointError as e:
        node.issue(f"invalid Twisted server endpoint {text!r}: {e}")
        return None
    return text


def listeners(node: Node) -> Tuple[ListenerConfig, ...]:
    found: List[ListenerConfig] = []
    first_line: Dict[str, int] = {}
    for item in node.sequence(non_empty=True) or ():
        fields = item.mapping(LISTENER_KEYS, required=("name", "endpoint"))
        if fields is None:
            continue
        name = fields.read("name", Node.string, None)
        if name is not None:
            if name in first_line:
                fields["name"].issue(f"duplicate listener name {name!r} (first on line {first_line[name]})")
            first_line.setdefault(name, fields["name"].line)
        endpoint = fields.read("endpoint", server_endpoint, None)
        tls = fields.read("tls", listener_tls, None)
        if tls is not None and endpoint is not None and endpoint.split(":", 1)[0].strip().lower() == "ssl":
            fields["endpoint"].issue(
                "a listener with a 'tls' block takes a plain endpoint like tcp:8443; "
                "'ssl:' would wrap TLS twice"
            )
        h2c = fields.read("h2c", Node.boolean, False)
        if h2c and "tls" in fields:
            fields["h2c"].issue(
                "h2c is cleartext HTTP/2; a listener with 'tls' offers HTTP/2 over ALPN (tls.http2) instead",
                at_key=True,
            )
        redirect = fields.read("redirect_https", _https_port, None)
        if redirect is not None and "tls" in fields:
            fields["redirect_https"].issue("a TLS listener serves HTTPS itself; 'redirect_https' goes on a plain listener", at_key=True)
        health_path = fields.read("health_path", _health_path, None)
        if name is not None and endpoint is not None:
            location = fields["endpoint"].location()
            found.append(
                ListenerConfig(
                    name=name, endpoint=endpoint, tls=tls, h2c=h2c, redirect_https=redirect, location=location,
                    health_path=health_path,
                )
            )
    return tuple(found)


_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()+,;=:@/-]*")


def _health_path(node: Node) -> Optional[str]:
    """An exact path such as ``/_gateway/health``: no pattern, no query."""
    text = node.string()
    if text is None:
        return None
    if not _PLAIN_PATH.fullmatch(text) or "//" in text or "/./" in text or "/../" in text or text.endswith(("/.", "/..")):
        node.issue(f"expected an exact path like '/_gateway/health' (no pattern, query or dot segments), got {text!r}")
        return None
    return text


def _https_port(node: Node) -> Optional[int]:
    """``true`` (443), ``false`` (off) or a port number."""
    if node.kind == "boolean":
        return 443 if node.boolean() else None
    port = node.integer(min=1)
    if port is not None and port > 65535:
        node.issue(f"expected a port from 1 to 65535 (or true for 443), got {port}")
        return None
    return port


def listener_tls(node: Node) -> Optional[ListenerTLSConfig]:
    """
    Paths and choices only: the files are read when the listener is built
    (and again on reload), with errors pointing at this block.
    """
    fields = node.mapping(TLS_KEYS, required=("certificate", "private_key"))
    if fields is None:
        return None
    certificate = fields.read("certificate", Node.string, None)
    private_key = fields.read("private_key", Node.string, None)
    client_ca = fields.read("client_ca", Node.string, None)
    client_certificate = fields.read("client_certificate", lambda n: n.choice(CLIENT_CERTIFICATE), "none")
    if client_certificate != "none" and "client_ca" not in fields:
        fields["client_certificate"].issue(
            f"client_certificate: {client_certificate} needs 'client_ca', "
            "the CA bundle that client certificates are checked against"
        )
    elif "client_ca" in fields and client_certificate == "none" and _written(fields, "client_certificate", "none"):
        fields["client_ca"].issue(
            "client_ca is set but client_certificate is none, so no client certificate "
            "would be asked for; set client_certificate: optional or required"
        )
    more = fields.read("certificates", _listener_certificates, ())
    min_version = fields.read("min_version", _tls_version, "1.2")
    http2 = fields.read("http2", Node.boolean, True)
    groups = fields.read("groups", _tls_groups, ListenerTLSConfig.__attrs_attrs__.groups.default)
    resumption = fields.read("session_resumption", _session_resumption, None)  # None: ListenerTLSConfig.resumption
    if certificate is None or private_key is None:
        return None
    return ListenerTLSConfig(
        certificate=certificate,
        private_key=private_key,
        client_ca=client_ca,
        client_certificate=client_certificate,
        certificates=more,
        min_version=min_version,
        http2=http2,
        groups=groups,
        location=node.location(at_key=True),
        session_resumption=resumption,
    )


def _session_resumption(node: Node) -> Optional[SessionResumptionConfig]:
    """``true`` (the defaults), ``false`` (off), or ``{cache, tickets, lifetime, ticket_key_rotation}``."""
    if node.kind == "boolean":
        return SessionResumptionConfig() if node.boolean() else NO_RESUMPTION
    fields = node.mapping(SESSION_RESUMPTION_KEYS)
    if fields is None:
        return None
    default = SessionResumptionConfig()
    count = len(node.issues.found)
    config = SessionResumptionConfig(
        cache=fields.read("cache", Node.boolean, default.cache),
        tickets=fields.read("tickets", Node.boolean, default.tickets),
        lifetime=fields.read("lifetime", Node.duration, default.lifetime),
        ticket_key_rotation=fields.read("ticket_key_rotation", Node.duration, default.ticket_key_rotation),
    )
    if len(node.issues.found) != count:
        return None
    if config.lifetime < 1:
        fields["lifetime"].issue("must be at least 1s (OpenSSL counts whole seconds)")
        return None
    if config.tickets and config.ticket_key_rotation < config.lifetime:
        where = fields["ticket_key_rotation"] if "ticket_key_rotation" in fields else fields["lifetime"]
        where.issue(
            f"ticket_key_rotation ({config.ticket_key_rotation:g}s) is shorter than lifetime ({config.lifetime:g}s): "
            "every rotation ends the sessions before their time"
        )
        return None
    return attrs.evolve(config, enabled=config.cache or config.tickets)


def _written(fields: Fields, key: str, default: str) -> bool:
    """Whether `key` is absent or written as exactly `default` (not merely invalid)."""
    return key not in fields or fields[key].node.value == default


def _listener_certificates(node: Node) -> Optional[Tuple[ListenerCertificate, ...]]:
    found: List[ListenerCertificate] = []
    for item in node.sequence() or ():
        fields = item.mapping(TLS_CERTIFICATE_KEYS, required=TLS_CERTIFICATE_KEYS)
        if fields is None:
            continue
        certificate = fields.read("certificate", Node.string, None)
        private_key = fields.read("private_key", Node.string, None)
        if certificate is not None and private_key is not None:
            found.append(ListenerCertificate(certificate=certificate, private_key=private_key, location=item.location()))
    return tuple(found)


_GROUP_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _tls_groups(node: Node) -> Optional[Tuple[str, ...]]:
    """OpenSSL group names (X25519, P-256, X25519MLKEM768...); whether this OpenSSL knows them is checked when the listener is built."""
    found: List[str] = []
    for item in node.sequence(non_empty=True) or ():
        name = item.string()
        if name is None:
            continue
        if not _GROUP_NAME.fullmatch(name):
            item.issue(f"expected a key exchange group name like X25519 or P-256, got {name!r}")
        elif name.lower() in (g.lower() for g in found):
            item.issue(f"{name!r} is listed twice")
        else:
            found.append(name)
    return tuple(found) if found else None


def _tls_version(node: Node) -> Optional[str]:
    """``"1.2"`` or ``"1.3"``; an unquoted 1.2 (a YAML number) is accepted too."""
    text = str(node.node.value) if node.kind in ("number", "integer", "string") else ""
    if text in ("1", "1.0", "1.1"):
        node.issue(f'TLS {text} is deprecated (RFC 8996) and never offered; use "1.2" or "1.3"')
        return None
    if node.kind == "number" and text in TLS_MIN_VERSIONS:
        return text
    return node.choice(TLS_MIN_VERSIONS)


def limits(node: Node) -> LimitsConfig:
    fields = node.mapping(LIMIT_KEYS)
    default = LimitsConfig()
    if fields is None:
        return default
    values: Dict[str, object] = {}
    for key in LIMIT_SIZES:
        values[key] = fields.read(key, lambda n: n.size(min=1), getattr(default, key))
    for key in LIMIT_DURATIONS:
        values[key] = fields.read(key, Node.duration, getattr(default, key))
    values["max_headers"] = fields.read("max_headers", lambda n: n.integer(min=1), default.max_headers)
    if "client_header_timeout" in fields and "header_timeout" in fields:
        fields["header_timeout"].issue("'header_timeout' is the older name of 'client_header_timeout': set one", at_key=True)
    header_key = "client_header_timeout" if "client_header_timeout" in fields else "header_timeout"
    values["header_timeout"] = fields.read(header_key, Node.duration, default.header_timeout)
    values["body_timeout"] = fields.read("client_body_timeout", Node.duration, default.body_timeout)
    values["request_buffering"] = fields.read("request_buffering", Node.boolean, default.request_buffering)
    values["max_connections"] = fields.read("max_connections", lambda n: n.integer(min=1), default.max_connections)
    return LimitsConfig(**values)  # type: ignore[arg-type]


def trusted_proxies(node: Node) -> Tuple[IPNetwork, ...]:
    """Addresses or CIDRs; host bits are allowed (``10.1.2.3/8`` is ``10.0.0.0/8``)."""
    networks: List[IPNetwork] = []
    for item in node.sequence() or ():
        text = item.string()
        if text is None:
            continue
        try:
            networks.append(ip_network(text.strip(), strict=False))
        except ValueError:
            item.issue(f"expected an IP address or CIDR like 10.0.0.0/8, got {text!r}")
    return tuple(networks)


def plugin_sections(node: Node) -> Tuple[PluginSection, ...]:
    """
    ``name: {enabled: bool, ...options}`` per plugin.  A plugin that
    declares its options has them read here, like the gateway's own keys
    (file, line, key path, "did you mean", units); the others get them as
    plain values and validate them when they are built.  Disabled sections
    are not read beyond ``enabled``.
    """
    from twistgate.plugins.options import defaults_at, read_options

    sections: List[PluginSection] = []
    for name, plugin in node.entries() or ():
        enabled = True
        entries = [] if plugin.is_null() else plugin.entries() or []  # `name:` alone: on, no options
        for key, value in entries:
            if key == "enabled":
                enabled = value.boolean() is not False
        spec = _declared_options(name) if enabled else None
        options: Optional[Dict[str, object]]
        if spec is None:
            options = {key: value.plain() for key, value in entries if key != "enabled"}
        elif plugin.is_null():
            options = defaults_at(plugin, spec)
        elif plugin.kind == "mapping":
            read = read_options(plugin, spec, ("enabled",))
            options = read[1] if read is not None else None
        else:
            options = None  # entries() reported it
        sections.append(
            PluginSection(
                name=name,
                enabled=enabled,
                options=options or {},
                location=plugin.location(at_key=True),
                declared=spec if options is not None else None,
            )
        )
    return tuple(sections)


def _declared_options(name: str) -> Any:
    """
    The options declaration of the plugin called `name`, or None when it has
    none, or when it cannot be found or imported here (building the plugins
    reports that, with the registry the gateway really uses).
    """
    from twistgate.plugins.options import FreeOptions, options_spec
    from twistgate.plugins.registry import current_plugins

    registry = current_plugins()
    if name not in registry:
        return None
    try:
        spec = options_spec(registry.load(name))
    except Exception:
        return None
    return None if isinstance(spec, FreeOptions) else spec


def demo(node: Node) -> Optional[DemoConfig]:
    """``true`` for the default endpoint, ``{endpoint: ...}``, or ``false``."""
    if node.kind == "boolean":
        return DemoConfig() if node.boolean() else None
    if node.kind != "mapping":
        node.issue(f"expected true, false or a mapping like {{endpoint: 'tcp:5001'}}, got {node.describe()}")
        return None
    fields = node.mapping(DEMO_KEYS)
    if fields is None:
        return None
    return DemoConfig(endpoint=fields.read("endpoint", server_endpoint, DemoConfig().endpoint))
