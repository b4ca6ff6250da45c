"""Small checks shared by the built-in plugins' factories (raise ValueError/TypeError)."""

from __future__ import annotations

import difflib
from typing import Any, Collection, Mapping, Tuple


def check_keys(options: Mapping[str, Any], known: Collection[str]) -> None:
    """Reject option names the plugin does not know, suggesting the closest one."""
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping, not {type(options).__name__}")
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown option {key!r}{hint} (options: {', '.join(sorted(known))})"
            )


def string_list(options: Mapping[str, Any], key: str) -> Tuple[str, ...]:
    """``options[key]`` as a tuple of strings; absent or null gives ``()``."""
    value = options.get(key)
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{key} must be a list of strings, not {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"{key} must be a list of strings; {item!r} is a {type(item).__name__}")
    return tuple(value)
