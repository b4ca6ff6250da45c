"""
The operations sections of the configuration: ``admin``, ``access_log``,
``tracing`` and ``reload``.  Parsed once into frozen values; errors carry
file, line and key path.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import attrs

from twistgate.config._node import Node
from twistgate.config._sections import server_endpoint
from twistgate.config.model import Location

ADMIN_KEYS = ("endpoint", "token", "metrics_auth", "ready_requires_healthy_target")
ACCESS_LOG_KEYS = ("path", "format", "flush_interval")
ACCESS_LOG_FORMATS = ("json", "text")
TRACING_KEYS = (
    "propagate", "otlp_endpoint", "sample_ratio", "service_name", "headers",
    "batch_size", "queue_size", "export_interval", "export_timeout",
)
RELOAD_KEYS = ("watch", "interval")


@attrs.frozen(kw_only=True)
class AdminSettings:
    """The admin listener: JSON API, dashboard and /metrics; never public."""

    endpoint: str
    token: str = attrs.field(repr=False)
    metrics_auth: bool = False  # /metrics needs the token too
    # /readyz answers 503 while no forwarding route can reach a healthy target (twistgate.ops.probes)
    ready_requires_healthy_target: bool = False
    location: Location = Location()


@attrs.frozen(kw_only=True)
class AccessLogSettings:
    path: str = "-"  # "-" is standard output
    format: str = "json"  # json | text
    # Lines are buffered and written out this often (NGINX's `flush=`): one
    # write per interval instead of one per request.  0 writes every line.
    flush_interval: float = 1.0
    location: Location = Location()


@attrs.frozen(kw_only=True)
class TracingSettings:
    propagate: bool = True  # W3C traceparent/tracestate upstream
    otlp_endpoint: Optional[str] = None  # OTLP/HTTP traces URL; None = no export
    sample_ratio: float = 1.0  # for traces the gateway starts
    service_name: str = "twistgate"
    headers: Tuple[Tuple[str, str], ...] = attrs.field(default=(), repr=False)  # sent to the collector
    batch_size: int = 512
    queue_size: int = 2048
    export_interval: float = 5.0
    export_timeout: float = 10.0
    location: Location = Location()


@attrs.frozen(kw_only=True)
class ReloadSettings:
    watch: bool = False  # poll the config file and reload when it changes
    interval: float = 2.0
    location: Location = Location()


def parse_admin(node: Node) -> Optional[AdminSettings]:
    fields = node.mapping(ADMIN_KEYS, required=("endpoint", "token"))
    if fields is None:
        return None
    endpoint = fields.read("endpoint", server_endpoint, None)
    token = fields.read("token", Node.string, None)
    metrics_auth = fields.read("metrics_auth", Node.boolean, False)
    healthy_target = fields.read("ready_requires_healthy_target", Node.boolean, False)
    if endpoint is None or token is None:
        return None
    return AdminSettings(
        endpoint=endpoint, token=token, metrics_auth=metrics_auth, ready_requires_healthy_target=healthy_target,
        location=node.location(at_key=True),
    )


def parse_access_log(node: Node) -> Optional[AccessLogSettings]:
    fields = node.mapping(ACCESS_LOG_KEYS)
    if fields is None:
        return None
    return AccessLogSettings(
        path=fields.read("path", Node.string, "-"),
        format=fields.read("format", lambda n: n.choice(ACCESS_LOG_FORMATS), "json"),
        flush_interval=fields.read("flush_interval", lambda n: n.duration(positive=False), 1.0),
        location=node.location(at_key=True),
    )


def _http_url(node: Node) -> Optional[str]:
    text = node.string()
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        node.issue(f"expected an http:// or https:// URL like http://127.0.0.1:4318/v1/traces, got {text!r}")
        return None
    if parts.username or parts.password:
        node.issue("credentials in the URL are not allowed; send them with 'headers'")
        return None
    if parts.path in ("", "/"):
        text = text.rstrip("/") + "/v1/traces"  # a collector's base URL (OTLP/HTTP default path)
    return text


def _ratio(node: Node) -> Optional[float]:
    value = node.plain() if node.kind in ("integer", "number") else None
    if value is None or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        node.issue(f"expected a number from 0 to 1 (the share of new traces recorded), got {node.describe()}")
        return None
    return float(value)


def _headers(node: Node) -> Optional[Tuple[Tuple[str, str], ...]]:
    pairs = []
    for name, value in node.entries() or ():
        text = value.string()
        if text is not None:
            pairs.append((name, text))
    return tuple(pairs)


def parse_tracing(node: Node) -> Optional[TracingSettings]:
    fields = node.mapping(TRACING_KEYS)
    if fields is None:
        return None
    default = TracingSettings()
    return TracingSettings(
        propagate=fields.read("propagate", Node.boolean, True),
        otlp_endpoint=fields.read("otlp_endpoint", _http_url, None),
        sample_ratio=fields.read("sample_ratio", _ratio, default.sample_ratio),
        service_name=fields.read("service_name", Node.string, default.service_name),
        headers=fields.read("headers", _headers, ()),
        batch_size=fields.read("batch_size", lambda n: n.integer(min=1), default.batch_size),
        queue_size=fields.read("queue_size", lambda n: n.integer(min=1), default.queue_size),
        export_interval=fields.read("export_interval", Node.duration, default.export_interval),
        export_timeout=fields.read("export_timeout", Node.duration, default.export_timeout),
        location=node.location(at_key=True),
    )


def parse_reload(node: Node) -> Optional[ReloadSettings]:
    fields = node.mapping(RELOAD_KEYS)
    if fields is None:
        return None
    return ReloadSettings(
        watch=fields.read("watch", Node.boolean, False),
        interval=fields.read("interval", Node.duration, 2.0),
        location=node.location(at_key=True),
    )


def section(config: Any, key: str) -> Any:
    """A top-level extension section's parsed value, or None."""
    sections: Mapping[str, Any] = getattr(config, "sections", {}) or {}
    return sections.get(key)
