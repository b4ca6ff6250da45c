"""
``upstreams``: named groups of targets (or the source that lists them:
``targets_from``), how to balance across them, and the timeouts and pool
settings for talking to them.  The resilience sections (health_check,
circuit_breaker, retry, outlier_detection, discovery, hash_key) are
extension sections: see twistgate.upstream.settings.

``balance`` and ``targets_from`` name extensions (built-in or from the
``twistgate.balancers`` / ``twistgate.discovery`` entry-point groups, see
twistgate.plugins.extension_points); when they carry options or name a
third-party extension, the resolved `ExtensionChoice` is kept in the
upstream's ``policies`` under ``balance`` / ``targets_from``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import attrs

from twistgate.config._node import Fields, Node
from twistgate.config import sections
from twistgate.config._pending import PENDING_KEYS
from twistgate.plugins.extension_points import BALANCERS, ExtensionChoice, resolve
from twistgate.plugins.options import defaults_at, peek, read_options
from twistgate.config.model import (
    PoolConfig,
    TargetConfig,
    UpstreamConfig,
    UpstreamTimeoutsConfig,
)

UPSTREAM_KEYS = ("targets", "targets_from", "balance", "timeouts", "pool", "protocol")
PROTOCOLS = ("http1", "h2", "h2c")
TARGET_KEYS = ("url", "weight", "srv", "scheme", "backup")
TIMEOUT_KEYS = ("connect", "read", "total", "write")
POOL_KEYS = ("max_idle_per_target", "idle_timeout")
BALANCE = ("round_robin", "least_connections", "ip_hash", "consistent_hash", "random", "least_response_time")
DEFAULT_PORTS = {"http": 80, "https": 443}
_SRV_NAME = re.compile(r"_[A-Za-z0-9-]+\._(?:tcp|udp)\.(?:[A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+\.?", re.I)


def upstreams(node: Node) -> Dict[str, Optional[UpstreamConfig]]:
    """
    Every upstream by name; an invalid one maps to ``None`` so that routes
    can still be checked against the names the user wrote.
    """
    return {name: upstream(name, value) for name, value in node.entries() or ()}


def upstream(name: str, node: Node) -> Optional[UpstreamConfig]:
    fields = node.mapping(
        UPSTREAM_KEYS + tuple(sections.upstream_sections()),
        required=() if "targets_from" in _keys(node) else ("targets",),
        pending=PENDING_KEYS["upstream"] - set(sections.upstream_sections()),
    )
    if fields is None:
        return None
    found = fields.read("targets", targets, None)
    source = fields.read("targets_from", _targets_from, None)
    if "targets" in fields and "targets_from" in fields:
        fields["targets_from"].issue("an upstream has either 'targets' or 'targets_from', not both", at_key=True)
    if "discovery" in fields and "targets_from" in fields:
        fields["discovery"].issue(
            "'discovery' re-resolves the host names of 'targets'; give targets_from its own interval and timeout",
            at_key=True,
        )
    balance, choice = fields.read("balance", _balance, ("round_robin", None))
    if "hash_key" in fields and balance != "consistent_hash":
        fields["hash_key"].issue(f"'hash_key' is only used by balance: consistent_hash (this upstream uses {balance})", at_key=True)
    elif "hash_key" in fields and choice is not None and "key" in _keys(fields["balance"]):
        fields["hash_key"].issue("the hash key is given twice: as balance's 'key' and as 'hash_key'", at_key=True)
    timeouts = fields.read("timeouts", upstream_timeouts, UpstreamTimeoutsConfig())
    pool_config = fields.read("pool", pool, PoolConfig())
    protocol = fields.read("protocol", lambda n: n.choice(PROTOCOLS), "http1")
    if found and protocol in ("h2", "h2c"):
        wanted = "https" if protocol == "h2" else "http"
        wrong = [t.url for t in found if t.scheme != wanted]
        if wrong:
            fields["protocol"].issue(
                f"protocol: {protocol} needs {wanted}:// targets "
                + ("(HTTP/2 over TLS, negotiated by ALPN)" if protocol == "h2" else "(cleartext HTTP/2)")
                + f"; not {', '.join(wrong)}"
            )
    policies = sections.read(fields, sections.upstream_sections())
    health = policies.get("health_check")
    if getattr(health, "type", "http") == "grpc" and protocol == "http1" and "health_check" in fields:
        fields["health_check"].issue("a gRPC health check (type: grpc) needs protocol: h2 or h2c", at_key=True)
    if not found and source is None:
        return None
    if choice is not None:
        policies["balance"] = choice
    if source is not None:
        policies["targets_from"] = source
    if found and all(t.backup for t in found):
        fields["targets"].issue("every target is a backup; at least one must be a primary (leave 'backup' out)")
        return None
    return UpstreamConfig(
        name=name,
        targets=found or (),
        balance=balance,
        timeouts=timeouts,
        pool=pool_config,
        protocol=protocol,
        policies=policies,
        location=node.location(at_key=True),
    )


def _targets_from(node: Node) -> Any:
    from twistgate.upstream.targets_from import parse_targets_from

    return parse_targets_from(node)


def _balance(node: Node) -> Optional[Tuple[str, Optional[ExtensionChoice]]]:
    """
    ``balance: NAME`` or ``balance: {type: NAME, ...options}``: the name, and
    the `ExtensionChoice` when it carries options or is not a built-in.
    """
    if node.kind == "mapping":
        type_node = peek(node, "type")
        extension = resolve(type_node, BALANCERS) if type_node is not None else None
        if extension is None:
            node.mapping(("type",) + tuple(_keys(node)), required=("type",))
            return None
        read = read_options(node, extension.options, ("type",))
        if read is None or read[1] is None:
            return None
        return extension.name, ExtensionChoice(extension=extension, options=read[1], location=node.location(at_key=True))
    extension = resolve(node, BALANCERS)
    if extension is None:
        return None
    if extension.builtin:
        return extension.name, None
    options = defaults_at(node, extension.options)
    if options is None:
        return None
    return extension.name, ExtensionChoice(extension=extension, options=options, location=node.location(at_key=True))


def targets(node: Node) -> Tuple[TargetConfig, ...]:
    found: List[TargetConfig] = []
    first_line: Dict[Tuple[str, str, int], int] = {}
    for item in node.sequence(non_empty=True) or ():
        one = target(item)
        if one is None:
            continue
        address = (one.scheme, one.host.lower(), one.port)
        if address in first_line:
            item.issue(f"duplicate target {one.url!r} (first on line {first_line[address]}); raise its weight instead")
            continue
        first_line[address] = item.line
        found.append(one)
    return tuple(found)


def target(node: Node) -> Optional[TargetConfig]:
    fields = node.mapping(TARGET_KEYS, required=() if "srv" in _keys(node) else ("url",))
    if fields is None:
        return None
    weight = fields.read("weight", lambda n: n.integer(min=1), 1)
    backup = fields.read("backup", Node.boolean, False)
    if "srv" in fields:
        found = srv_target(fields, weight)
        return attrs.evolve(found, backup=backup) if found is not None else None
    if "scheme" in fields:
        fields["scheme"].issue("'scheme' goes with 'srv' targets; a 'url' target names its scheme itself", at_key=True)
    url = fields.read("url", Node.string, None)
    if url is None:
        return None
    try:
        scheme, host, port = split_target_url(url)
    except ValueError as e:
        fields["url"].issue(str(e))
        return None
    return TargetConfig(url=url, scheme=scheme, host=host, port=port, weight=weight, backup=backup)


def srv_target(fields: Fields, weight: int) -> Optional[TargetConfig]:
    """``{srv: _http._tcp.users.service.consul, scheme: http}``: addresses and ports from DNS."""
    if "url" in fields:
        fields["url"].issue("a target has either 'url' or 'srv', not both", at_key=True)
        return None
    scheme = fields.read("scheme", lambda n: n.choice(tuple(DEFAULT_PORTS)), "http")
    name = fields.read("srv", Node.string, None)
    if name is None:
        return None
    name = name.strip()
    if not _SRV_NAME.fullmatch(name):
        fields["srv"].issue(f"expected an SRV name like _http._tcp.users.service.consul, got {name!r}")
        return None
    name = name.rstrip(".").lower()
    return TargetConfig(url=f"srv+{scheme}://{name}", scheme=scheme, host=name, port=0, weight=weight, srv=True)


def _keys(node: Node) -> List[str]:
    """The keys written in a mapping node, without reporting anything (the mapping read does)."""
    if node.kind != "mapping":
        return []
    return [str(key.value) for key, _ in node.node.value]


def split_target_url(url: str) -> Tuple[str, str, int]:
    """
    ``(scheme, host, port)`` of ``http(s)://host[:port][/]``.  Paths are
    refused rather than silently dropped: use a route's ``add_prefix``.
    """
    example = "like http://10.0.0.5:8080"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError(f"invalid target url {url!r}: {e}") from None
    if parts.scheme.lower() not in DEFAULT_PORTS:
        raise ValueError(f"a target url must start with http:// or https://, {example}; got {url!r}")
    if not parts.hostname:
        raise ValueError(f"a target url needs a host, {example}; got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"a target url must not contain credentials; got {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(
            f"a target url must not have a path ({parts.path!r}); "
            "use the route's add_prefix to send requests under a path"
        )
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ValueError(f"a target url must not have a query or fragment; got {url!r}")
    if port == 0:
        raise ValueError(f"a target url needs a port from 1 to 65535; got {url!r}")
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[scheme]


def upstream_timeouts(node: Node) -> UpstreamTimeoutsConfig:
    fields = node.mapping(TIMEOUT_KEYS)
    default = UpstreamTimeoutsConfig()
    if fields is None:
        return default
    return UpstreamTimeoutsConfig(
        connect=fields.read("connect", Node.duration, default.connect),
        read=fields.read("read", Node.duration, default.read),
        total=fields.read("total", Node.duration, default.total),
        write=fields.read("write", Node.duration, default.write),
    )


def pool(node: Node) -> PoolConfig:
    fields = node.mapping(POOL_KEYS)
    default = PoolConfig()
    if fields is None:
        return default
    return PoolConfig(
        max_idle_per_target=fields.read(
            "max_idle_per_target", lambda n: n.integer(min=1), default.max_idle_per_target
        ),
        idle_timeout=fields.read("idle_timeout", Node.duration, default.idle_timeout),
    )
