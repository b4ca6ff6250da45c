"""
``ip_allow``: answer 403 to clients outside an allow list or inside a deny list.

Options:

``cidrs`` (alias ``allow``)
    Addresses or networks (IPv4 or IPv6) that may use the route.  When
    non-empty, every other address is refused.
``deny``
    Addresses or networks refused even if they are allowed: deny wins.

The options are declared (`Options`), so the configuration loader checks
them (every address, with file and line); the lists are parsed once, when
the plugin is built.  ``request.client_ip``
(as believed through ``trusted_proxies``) is checked; an address that does not
parse is refused.  IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``) are
checked as the IPv4 address they carry.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, List, Mapping, Sequence, Tuple, Union

from twistgate.errors import Forbidden
from twistgate.messages import ProxyRequest
from twistgate.plugins.hookspecs import hookimpl
from twistgate.plugins.registry import PluginContext

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

MESSAGE = "client address not allowed"


def parse_network(text: str, option: str) -> Network:
    """A network from ``10.0.0.0/8``, ``2001:db8::/32`` or a single address."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as error:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{option}: {text!r} is not an IP address or CIDR network") from error
        raise ValueError(
            f"{option}: {text!r} has host bits set; did you mean {str(loose)!r}?"
        ) from error


def parse_address(text: str) -> Address:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class IPAllow:
    """Refuses requests by client address; see the module docstring."""

    def __init__(self, allow: Sequence[Network], deny: Sequence[Network]) -> None:
        self.allow: Tuple[Network, ...] = tuple(allow)
        self.deny: Tuple[Network, ...] = tuple(deny)

    def permits(self, client_ip: str) -> bool:
        """Whether ``client_ip`` may pass."""
        try:
            address = parse_address(client_ip)
        except ValueError:
            return False
        # `in` is False, not an error, across IP versions.
        if any(address in network for network in self.deny):
            return False
        return not self.allow or any(address in network for network in self.allow)

    @hookimpl(tryfirst=True)  # network rules before authentication: a denied address gets 403, never a challenge
    def on_request(self, request: ProxyRequest) -> None:
        if not self.permits(request.client_ip):
            raise Forbidden(MESSAGE)


@dataclasses.dataclass(frozen=True)
class Options:
    """The options of ``ip_allow`` (read and checked by the configuration loader)."""

    cidrs: List[str] = dataclasses.field(
        default_factory=list, metadata={"doc": "addresses or networks allowed; when non-empty, all others are refused"}
    )
    allow: List[str] = dataclasses.field(default_factory=list, metadata={"doc": "another name for cidrs"})
    deny: List[str] = dataclasses.field(
        default_factory=list, metadata={"doc": "addresses or networks refused; deny wins over allow"}
    )

    def __post_init__(self) -> None:
        if self.cidrs and self.allow:
            raise ValueError("give either cidrs or allow (they are the same option), not both")
        for key in ("cidrs", "allow", "deny"):
            for text in getattr(self, key):
                parse_network(text, key)
        if not (self.cidrs or self.allow or self.deny):
            raise ValueError(
                "needs cidrs (or allow) and/or deny; "
                "to turn the plugin off for a route, use enabled: false"
            )


def make_plugin(options: Mapping[str, Any], context: PluginContext) -> IPAllow:
    """Answer 403 to clients outside an allow list or inside a deny list (options checked by the loader: `Options`)."""
    allow_key = "allow" if options.get("allow") else "cidrs"
    allow = [parse_network(text, allow_key) for text in options.get(allow_key) or ()]
    deny = [parse_network(text, "deny") for text in options.get("deny") or ()]
    return IPAllow(allow, deny)


make_plugin.Options = Options  # type: ignore[attr-defined]
