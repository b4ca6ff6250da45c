"""
One socket, one owner: the listeners, the admin API and the demo backends
must not bind the same address (twistgate.config.endpoints.same_address),
or the second bind would fail at start, or on a reload.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import yaml

from twistgate.config._issues import Issues
from twistgate.config._node import Fields
from twistgate.config.endpoints import EndpointError, ServerAddress, addresses_clash, parse_server_endpoint
from twistgate.config.model import GatewayConfig, Location


def check_addresses(config: GatewayConfig, fields: Fields, issues: Issues) -> None:
    """Record an issue at each endpoint that binds an address something earlier in the file already binds."""
    owners: List[Tuple[str, ServerAddress, Location]] = []
    for index, listener in enumerate(config.listeners):
        owners.append((f"listener {listener.name!r} (listeners[{index}])", _parsed(listener.endpoint), listener.location))
    admin = config.sections.get("admin")
    if admin is not None and "admin" in fields:
        owners.append(("the admin API (admin.endpoint)", _parsed(admin.endpoint), _at(fields, "admin", "endpoint")))
    if config.demo is not None and "demo" in fields:
        owners.append(("the demo backends (demo.endpoint)", _parsed(config.demo.endpoint), _at(fields, "demo", "endpoint")))
    for later in range(1, len(owners)):
        name, address, where = owners[later]
        if address is None:
            continue
        for first_name, first, first_where in owners[:later]:
            if first is not None and addresses_clash(first, address):
                issues.add(where.line, where.path, _message(name, address, first_name, first_where))
                break


def _message(name: str, address: ServerAddress, first_name: str, first_where: Location) -> str:
    what = f"port {address.port}" if address.kind == "tcp" else f"socket {address.path or address.text}"
    line = f", line {first_where.line}" if first_where.line else ""
    advice = "give each its own port"
    if name.startswith("the demo") or first_name.startswith("the demo"):
        advice = "move the demo backends, e.g. demo: {endpoint: 'tcp:5002:interface=127.0.0.1'}"
    elif name.startswith("the admin API") or first_name.startswith("the admin API"):
        advice = "the admin API must never be on a public listener: give it a port of its own"
    return f"{address.text!r} binds the same {what} as {first_name}{line}; {advice}"


def _parsed(text: str) -> Optional[ServerAddress]:
    try:
        return parse_server_endpoint(text)
    except EndpointError:  # already reported where it was read
        return None


def _at(fields: Fields, section: str, key: str) -> Location:
    """Where ``section.key`` was written, or the section itself (``demo: true``)."""
    node = fields[section]
    if isinstance(node.node, yaml.MappingNode):
        for key_node, value in node.node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return Location(file=node.issues.file, line=value.start_mark.line + 1, path=f"{section}.{key}")
    return Location(file=node.issues.file, line=node.location(at_key=True).line, path=section)
