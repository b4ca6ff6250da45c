"""
Read a YAML file into a `GatewayConfig`, or raise `ConfigError` with every
issue found.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Mapping, Optional, TypeVar

from twistgate.config import _routes, _sections, _upstreams
from twistgate.config._addresses import check_addresses
from twistgate.config._issues import Issues
from twistgate.config._node import Fields, Node, compose
from twistgate.config import sections
from twistgate.config._pending import PENDING_KEYS
from twistgate.config.model import (
    ConfigError,
    GatewayConfig,
    LimitsConfig,
    UpstreamConfig,
)

T = TypeVar("T")

GATEWAY_KEYS = ("listeners", "limits", "trusted_proxies", "upstreams", "routes", "plugins", "demo", "engine", "defaults")
ENGINES = ("httptools", "twisted")
#: Top-level keys starting with this are ignored: a home for YAML anchors.
EXTENSION_PREFIX = "x-"


def load_file(path: str, environ: Optional[Mapping[str, str]] = None) -> GatewayConfig:
    """
    Load ``path``; the result's ``source`` is ``path`` so a reload can read
    it again.

    :param environ: for ``${NAME}``; the process environment by default.
    :raises ConfigError: also when the file cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        issues = Issues(file=path, environ={})
        issues.add(0, "", f"cannot read the configuration file: {reason}")
        raise ConfigError(issues.found) from None
    return load_text(text, filename=path, environ=environ, source=path)


def load_text(
    text: str,
    filename: str = "<string>",
    environ: Optional[Mapping[str, str]] = None,
    *,
    source: Optional[str] = None,
) -> GatewayConfig:
    """
    Load configuration from a string; ``filename`` only labels the issues.

    :raises ConfigError: carrying every issue, sorted by line.
    """
    issues = Issues(file=filename, environ=os.environ if environ is None else environ)
    root = compose(text, issues)
    config = gateway(root, source) if root is not None else None
    if issues.found or config is None:
        ordered = sorted(issues.found, key=lambda i: i.location.line)
        raise ConfigError(ordered)
    return config


def gateway(root: Node, source: Optional[str]) -> Optional[GatewayConfig]:
    """The top level: each section read by its own function."""
    if root.kind != "mapping":
        root.issue(f"the top level must be a mapping with at least 'listeners', got {root.describe()}")
        return None
    fields = root.mapping(
        GATEWAY_KEYS + tuple(sections.gateway_sections()),
        required=("listeners",),
        pending=PENDING_KEYS["gateway"] - set(sections.gateway_sections()),
        ignored_prefix=EXTENSION_PREFIX,
    )
    if fields is None:
        return None
    no_upstreams: Dict[str, Optional[UpstreamConfig]] = {}
    upstreams = _section(fields, "upstreams", _upstreams.upstreams, no_upstreams)
    readable = "upstreams" not in fields or fields["upstreams"].kind in ("mapping", "null")
    names = upstreams if readable else None
    defaults = None
    if "defaults" in fields and not fields["defaults"].is_null():
        defaults = _routes.defaults_fields(fields["defaults"])
    config = GatewayConfig(
        source=source,
        listeners=_section(fields, "listeners", _sections.listeners, ()),
        limits=_section(fields, "limits", _sections.limits, LimitsConfig()),
        trusted_proxies=_section(fields, "trusted_proxies", _sections.trusted_proxies, ()),
        upstreams={name: u for name, u in upstreams.items() if u is not None},
        routes=_section(fields, "routes", lambda n: _routes.routes(n, names, defaults), ()),
        plugins=_section(fields, "plugins", _sections.plugin_sections, ()),
        demo=_section(fields, "demo", _sections.demo, None),
        engine=fields.read("engine", lambda n: n.choice(ENGINES), "httptools"),
        sections=sections.read(fields, sections.gateway_sections()),
        defaults=_routes.read_defaults(defaults, names) if defaults is not None else None,
    )
    check_addresses(config, fields, root.issues)
    return config


def _section(fields: Fields, key: str, parse: Callable[[Node], T], default: T) -> T:
    """A top-level section; an empty one (``routes:`` with nothing under it) is the default."""
    if key in fields and fields[key].is_null() and key != "listeners":
        return default
    return fields.read(key, parse, default)
