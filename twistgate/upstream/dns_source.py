"""
``targets_from: {type: dns, name: users.internal, port: 8080}`` (A/AAAA) or
``{type: dns, srv: _http._tcp.users.service.consul}`` (SRV): the upstream's
targets are what DNS says, asked again every ``interval``.

The same resolution as host-name targets with a ``discovery`` section
(`twistgate.upstream.discovery`), offered as a discovery source: addresses
keep the name as their Host header and TLS name, a failed or empty answer
keeps the last good set.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, List, Literal, Mapping, Optional, Tuple

from twisted.internet.defer import Deferred

from twistgate.config.model import TargetConfig
from twistgate.plugins.extension_points import ExtensionContext
from twistgate.plugins.options import with_options
from twistgate.upstream.discovery import Discovery, Resolved, make_resolver
from twistgate.upstream.settings import DiscoveryConfig, split_nameserver
from twistgate.upstream.targets_from import DiscoverySupport, urls_of

__all__ = ["DnsOptions", "DnsSource", "dns"]

_SRV_NAME = re.compile(r"_[A-Za-z0-9-]+\._(?:tcp|udp)\.(?:[A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+\.?", re.I)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True)
class DnsOptions:
    """The options of ``targets_from: {type: dns}``: one of `name` and `srv`."""

    name: Optional[str] = None
    srv: Optional[str] = None
    port: Optional[int] = None  # with `name`; the scheme's by default
    scheme: Literal["http", "https"] = "http"
    nameservers: Tuple[str, ...] = ()  # address[:port]; the system's by default
    family: Literal["any", "ipv4", "ipv6"] = "any"

    def __post_init__(self) -> None:
        if (self.name is None) == (self.srv is None):
            raise ValueError("give either 'name' (A/AAAA records) or 'srv' (an SRV name)")
        if self.srv is not None and not _SRV_NAME.fullmatch(self.srv.strip()):
            raise ValueError(f"srv: expected an SRV name like _http._tcp.users.service.consul, got {self.srv!r}")
        if self.srv is not None and self.port is not None:
            raise ValueError("'port' goes with 'name'; SRV records carry their own ports")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port: must be from 1 to 65535, got {self.port}")
        for server in self.nameservers:
            split_nameserver(server)


class DnsSource:
    """A discovery source over `Discovery` (one configured name)."""

    def __init__(self, target: TargetConfig, config: DiscoveryConfig, resolver: Any, clock: Any) -> None:
        self.discovery = Discovery(config, [target], resolver, clock, lambda _: None)

    def fetch(self) -> "Deferred[List[Resolved]]":
        discovery = self.discovery
        if discovery.resolver is None:
            discovery.resolver = make_resolver(discovery.config, discovery.clock)
        return discovery.refresh().addCallback(lambda _: discovery.current())

    def targets(self) -> "Deferred[List[str]]":
        """``twistgate.discovery``'s method: one URL per address."""
        return self.fetch().addCallback(urls_of)


@with_options(DnsOptions)
def dns(options: Mapping[str, Any], context: ExtensionContext) -> DnsSource:
    support = context.internal if isinstance(context.internal, DiscoverySupport) else DiscoverySupport(30.0, 5.0)
    scheme = options.get("scheme", "http")
    if options.get("srv"):
        name = options["srv"].strip().rstrip(".").lower()
        target = TargetConfig(url=f"srv+{scheme}://{name}", scheme=scheme, host=name, port=0, srv=True)
    else:
        name = options["name"].strip()
        port = options.get("port") or _DEFAULT_PORTS[scheme]
        shown = f"[{name}]" if ":" in name else name
        target = TargetConfig(url=f"{scheme}://{shown}:{port}", scheme=scheme, host=name, port=port)
    config = DiscoveryConfig(
        interval=support.interval,
        timeout=support.timeout,
        nameservers=tuple(split_nameserver(s) for s in options.get("nameservers") or ()),
        family=options.get("family", "any"),
    )
    return DnsSource(target, config, support.resolver, context.clock)
