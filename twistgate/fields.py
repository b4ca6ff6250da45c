"""
The syntax of list-based header fields (RFC 9110 §5.6): comma-separated
elements, ``name[=value]`` directives with token or quoted-string values.
Shared by the cache (Cache-Control), compression (Accept-Encoding) and others.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence

__all__ = ["add_vary", "first_int", "parse_directives", "split_list"]

_ELEMENT = re.compile(
    r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:=([!#$%&'*+.^_`|~0-9A-Za-z-]+|\"(?:[^\"\\]|\\.)*\"))?\s*\Z",
    re.S,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def split_list(value: str) -> List[str]:
    """Split a list-based field value on commas that are not inside quotes."""
    items: List[str] = []
    start = 0
    quoted = False
    escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(value[start:index])
            start = index + 1
    items.append(value[start:])
    return [item for item in (i.strip() for i in items) if item]


def parse_directives(lines: Optional[Sequence[bytes]]) -> Dict[str, Optional[str]]:
    """Every well-formed directive, name lower-cased, quotes removed; first occurrence wins."""
    found: Dict[str, Optional[str]] = {}
    if not lines:
        return found
    for line in lines:
        for element in split_list(line.decode("latin-1")):
            match = _ELEMENT.match(element)
            if match is None:
                continue
            name = match.group(1).lower()
            if name in found:
                continue
            value = match.group(2)
            if value is not None and value.startswith('"'):
                value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
            found[name] = value
    return found


def add_vary(raw: Dict[bytes, List[bytes]], name: bytes) -> None:
    """Add ``name`` to a `Headers.raw` dict's ``Vary`` unless it (or ``*``) is there."""
    values = raw.get(b"Vary")
    if not values:
        raw[b"Vary"] = [name]
        return
    present = {token.strip().lower() for value in values for token in value.split(b",")}
    if name.lower() not in present and b"*" not in present:
        raw[b"Vary"] = values + [name]


def first_int(values: Optional[Sequence[bytes]]) -> Optional[int]:
    """The first of a field's values as an integer (Content-Length, grpc-status...); None when absent or not a number."""
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        return None
