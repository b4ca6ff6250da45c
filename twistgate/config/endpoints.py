"""
Server endpoint strings, read without building anything.

Twisted's ``serverFromString`` grammar ("strports"): ``type:arg:arg:key=value``,
``\\`` escaping the next character.  The types a gateway listens on are read
here, purely: ``tcp`` (``tcp:PORT[:INTERFACE][:BACKLOG]``), ``tcp6``
(``tcp6:PORT[:BACKLOG][:INTERFACE]``), ``ssl`` (``ssl:PORT`` and the TCP
options, plus its certificate options) and ``unix`` (``unix:PATH``...), with
their options checked the way Twisted's parsers would take them (an unknown
option, a port outside 0-65535, a backlog that is not a number).  Any other
type is accepted when an installed Twisted plugin serves that prefix
(``systemd:``, ``onion:``...), and is then opaque.

`same_address(a, b)` says whether two such strings would bind the same
socket, for the checks that refuse two listeners (or a listener and the
admin API, or the demo backends) on one port.  Port 0 ("any free port")
never clashes; an interface that is absent, ``0.0.0.0`` or ``::`` clashes
with every interface on the same port.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import attrs

__all__ = [
    "DEFAULT_BACKLOG", "EndpointError", "ServerAddress", "parse_server_endpoint", "same_address", "suggest_endpoint",
    "with_default_backlog",
]

#: The listen queue of a public listener that does not set ``backlog``: nginx's
#: default on Linux.  Twisted's own default, 50, drops connection attempts
#: when a thousand clients connect at once (the kernel caps it at somaxconn).
DEFAULT_BACKLOG = 511


class EndpointError(ValueError):
    """An endpoint string that cannot be served; the message says why in plain words."""


@attrs.frozen
class ServerAddress:
    """Where a server endpoint string listens."""

    text: str
    kind: str  # "tcp" (also tcp6 and ssl: a TCP port), "unix", or "other"
    port: Optional[int] = None  # tcp
    interface: str = ""  # tcp; "" = every interface
    path: Optional[str] = None  # unix

    @property
    def wildcard(self) -> bool:
        return _is_wildcard(self.interface)


#: For each type, its parameters in positional order; each may also be given
#: as a keyword (Twisted's endpoints.py: _parseTCP, _TCP6ServerParser,
#: _parseSSL, _parseUNIX).
_GRAMMAR: Dict[str, Tuple[str, ...]] = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "backlog", "interface"),
    "ssl": ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog", "extraCertChain", "dhParameters"),
    "unix": ("address", "mode", "backlog", "lockfile"),
}
KNOWN_TYPES = tuple(_GRAMMAR)
_HOST_PORT = re.compile(r"(?:(?P<host>\[[0-9A-Fa-f:.]+\]|\*|[A-Za-z0-9.-]*):)?(?P<port>\d{1,5})")


def split_description(text: str) -> Tuple[List[str], Dict[str, str]]:
    """
    Positional and keyword parameters, as Twisted's ``endpoints._parse``
    reads them: ``:`` separates, the first ``=`` of a parameter makes it a
    keyword, ``\\`` takes the next character literally.
    """
    args: List[str] = []
    kwargs: Dict[str, str] = {}
    parts: List[str] = []
    current: List[str] = []
    escaped = False
    keyword = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
            _add(args, kwargs, parts)
            parts, keyword = [], False
        elif char == "=" and not keyword:
            parts.append("".join(current))
            current = []
            keyword = True
        else:
            current.append(char)
    if escaped:
        raise EndpointError("it ends with a lone '\\'")
    parts.append("".join(current))
    _add(args, kwargs, parts)
    return args, kwargs


def _add(args: List[str], kwargs: Dict[str, str], parts: List[str]) -> None:
    if len(parts) == 1:
        args.append(parts[0])
    else:
        if parts[0] in kwargs:
            raise EndpointError(f"option {parts[0]!r} is given twice")
        kwargs[parts[0]] = parts[1]


def parse_server_endpoint(text: str) -> ServerAddress:
    """
    Read a server endpoint string; raise `EndpointError` with a plain reason
    (and a suggestion when one is likely) if it cannot be served.
    """
    if not text.strip():
        raise EndpointError("it is empty; write for example tcp:8080")
    if text != text.strip():
        raise EndpointError("it has spaces around it")
    args, kwargs = split_description(text)
    kind = args[0] if args else ""
    grammar = _GRAMMAR.get(kind)
    if grammar is None:
        if kind.lower() in _GRAMMAR:
            raise EndpointError(f"endpoint types are lower case: write {kind.lower()}:...")
        return _other(text, kind)
    positional = grammar
    values = dict(zip(positional, args[1:]))
    if len(args) - 1 > len(positional):
        raise EndpointError(f"too many ':'-separated values for {kind} (at most {len(positional)}: {', '.join(positional)})")
    for key, value in kwargs.items():
        if key not in positional:
            known = ", ".join(p for p in positional if p not in ("port", "address"))
            raise EndpointError(f"unknown option {key!r} for {kind} (known: {known}){_close(key, positional)}")
        if key in values:
            raise EndpointError(f"{key!r} is given twice")
        values[key] = value
    if "backlog" in values and not re.fullmatch(r"\d+", values["backlog"]):
        raise EndpointError(f"backlog must be a number, got {values['backlog']!r}")
    if kind == "unix":
        address = values.get("address")
        if not address:
            raise EndpointError("unix needs a socket path, for example unix:/run/twistgate.sock")
        if "mode" in values and not re.fullmatch(r"[0-7]{3,4}", values["mode"]):
            raise EndpointError(f"mode must be octal like 660, got {values['mode']!r}")
        return ServerAddress(text=text, kind="unix", path=address)
    port = _port(values.get("port"), kind)
    interface = values.get("interface", "::" if kind == "tcp6" else "")
    if interface:
        _check_interface(interface)
    return ServerAddress(text=text, kind="tcp", port=port, interface=interface)


def with_default_backlog(text: str) -> str:
    """``text`` with ``:backlog=DEFAULT_BACKLOG`` added when it is a tcp, tcp6, ssl or unix endpoint without one."""
    args, kwargs = split_description(text)
    grammar = _GRAMMAR.get(args[0] if args else "")
    if grammar is None or "backlog" in kwargs or len(args) - 1 > grammar.index("backlog"):
        return text
    return f"{text}:backlog={DEFAULT_BACKLOG}"


def _port(value: Optional[str], kind: str) -> int:
    if value is None or value == "":
        raise EndpointError(f"{kind} needs a port, for example {kind}:8080")
    if not re.fullmatch(r"[+-]?\d+", value):
        raise EndpointError(f"the port must be a number from 1 to 65535, got {value!r}")
    port = int(value)
    if not 0 <= port <= 65535:
        raise EndpointError(f"port {port} is outside 1-65535 (0 means any free port)")
    return port


def _check_interface(interface: str) -> None:
    if interface.startswith("["):
        raise EndpointError(f"write the interface without brackets: interface={interface.strip('[]')}")
    try:
        ipaddress.ip_address(interface)
        return
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(%[A-Za-z0-9_.-]+)?", interface):
        raise EndpointError(f"interface {interface!r} is neither an IP address nor a host name")


def _close(word: str, choices: Sequence[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _other(text: str, kind: str) -> ServerAddress:
    """A type Twisted reads through a plugin (systemd, onion...): only its prefix is checked."""
    if kind in _plugin_prefixes():
        return ServerAddress(text=text, kind="other")
    hint = suggest_endpoint(text)
    if hint is not None:
        raise EndpointError(f"it has no endpoint type; did you mean {hint!r}?")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+.-]*", kind or "-"):
        raise EndpointError(f"{kind!r} is not an endpoint type; write for example tcp:8080")
    known = ", ".join(KNOWN_TYPES + tuple(sorted(_plugin_prefixes() - set(KNOWN_TYPES))))
    raise EndpointError(f"unknown endpoint type {kind!r} (known: {known}){_close(kind, KNOWN_TYPES)}")


_prefixes: Optional[frozenset] = None


def _plugin_prefixes() -> frozenset:
    """The prefixes of the installed endpoint plugins (read once: a plugin scan is slow)."""
    global _prefixes
    if _prefixes is None:
        from twisted.internet.interfaces import IStreamServerEndpointStringParser
        from twisted.plugin import getPlugins

        _prefixes = frozenset(p.prefix for p in getPlugins(IStreamServerEndpointStringParser))
    return _prefixes


def suggest_endpoint(value: object) -> Optional[str]:
    """
    The endpoint string someone likely meant by ``8080``, ``:8080``,
    ``127.0.0.1:8080`` or ``[::1]:8080`` (the forms other servers use), or None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"tcp:{value}" if 0 <= value <= 65535 else None
    if not isinstance(value, str):
        return None
    match = _HOST_PORT.fullmatch(value.strip())
    if match is None or int(match.group("port")) > 65535:
        return None
    host = (match.group("host") or "").strip("[]")
    if host not in ("", "*", "localhost") and "." not in host and ":" not in host:
        return None  # "tcpx:80" is a misspelt type, not a host
    if host in ("", "*"):
        return f"tcp:{match.group('port')}"
    if ":" in host:
        return f"tcp6:{match.group('port')}:interface={host.replace(':', chr(92) + ':')}"
    return f"tcp:{match.group('port')}:interface={host}"


def _is_wildcard(interface: str) -> bool:
    if interface in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(interface).is_unspecified
    except ValueError:
        return False


def _same_interface(a: str, b: str) -> bool:
    if _is_wildcard(a) or _is_wildcard(b):
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower().rstrip(".") == b.lower().rstrip(".")


def addresses_clash(a: ServerAddress, b: ServerAddress) -> bool:
    """Whether two parsed endpoints would bind the same socket."""
    if a.kind == "tcp" and b.kind == "tcp":
        return a.port == b.port and a.port != 0 and _same_interface(a.interface, b.interface)
    if a.kind == "unix" and b.kind == "unix":
        assert a.path is not None and b.path is not None
        return os.path.normpath(a.path) == os.path.normpath(b.path)
    return a.kind == b.kind == "other" and a.text == b.text


def same_address(a: str, b: str) -> bool:
    """
    Whether two server endpoint strings would bind the same address (port 0
    never clashes; a missing, ``0.0.0.0`` or ``::`` interface clashes with
    any).  Strings that do not parse are compared as text.
    """
    try:
        return addresses_clash(parse_server_endpoint(a), parse_server_endpoint(b))
    except EndpointError:
        return a == b
