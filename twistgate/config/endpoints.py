"""
Server endpoint strings (``tcp:8080:interface=127.0.0.1``, ``ssl:...``,
``unix:/run/gw.sock``), understood without building an endpoint: enough to
tell whether two listeners would bind the same address.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import attrs

__all__ = ["ServerAddress", "parse_server_address", "same_address"]

_ANY_INTERFACE = ("", "0.0.0.0", "::")


@attrs.frozen
class ServerAddress:
    """Where a server endpoint listens: a TCP port (and interface) or a UNIX path."""

    kind: str  # tcp | tcp6 | ssl | unix | the plugin's name
    port: Optional[int] = None
    interface: str = ""
    path: Optional[str] = None


def _split(text: str) -> List[str]:
    """Twisted's strports split: on ``:``, with ``\\:`` an escaped colon."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _arguments(parts: List[str]) -> Tuple[List[str], Dict[str, str]]:
    positional, named = [], {}
    for part in parts:
        name, eq, value = part.partition("=")
        if eq:
            named[name] = value
        else:
            positional.append(part)
    return positional, named


def parse_server_address(text: str) -> ServerAddress:
    """The address `text` would listen on; ValueError when it names none."""
    kind, *rest = _split(text)
    positional, named = _arguments(rest)
    if kind in ("tcp", "tcp6", "ssl"):
        port_text = named.get("port", positional[0] if positional else None)
        if port_text is None or not port_text.lstrip("-").isdigit():
            raise ValueError(f"{kind} needs a port number")
        interface = named.get("interface", positional[1] if len(positional) > 1 and kind != "ssl" else "")
        return ServerAddress(kind=kind, port=int(port_text), interface=interface)
    if kind == "unix":
        path = named.get("address", positional[0] if positional else None)
        if not path:
            raise ValueError("unix needs a path")
        return ServerAddress(kind=kind, path=path)
    return ServerAddress(kind=kind)


def same_address(a: str, b: str) -> bool:
    """Whether two server endpoint strings would bind the same address (port 0 never clashes)."""
    try:
        first, second = parse_server_address(a), parse_server_address(b)
    except ValueError:
        return a == b
    if first.port is not None and second.port is not None:
        if first.port != second.port or first.port == 0:
            return False
        return (
            first.interface == second.interface
            or first.interface in _ANY_INTERFACE
            or second.interface in _ANY_INTERFACE
        )
    if first.path is not None or second.path is not None:
        return first.path == second.path
    return a == b
