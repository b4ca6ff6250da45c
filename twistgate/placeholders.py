"""
The ``{name}`` syntax of the texts a route fills in with a request's
values: redirect targets (`twistgate.answers`) and header values
(`twistgate.policies.transform.headers`).  ``{{`` and ``}}`` are literal
braces; any other lone brace is a mistake, reported when the configuration
is read, so both places accept and refuse exactly the same texts.
"""

from __future__ import annotations

import re
from typing import List, Tuple, Union

__all__ = ["Part", "split_placeholders"]

#: Literal text, or a 1-tuple naming the value that takes its place.
Part = Union[str, Tuple[str]]

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


def split_placeholders(text: str) -> Tuple[Part, ...]:
    """`text` as literal parts and ``{name}`` references; `ValueError` (saying how to fix it) on a stray brace."""
    parts: List[Part] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif match.group(1):
            parts.append((match.group(1),))
        else:
            raise ValueError(f"unbalanced {token!r} in {text!r}; write {token * 2} for a literal brace, or {{name}}")
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    return tuple(parts)
