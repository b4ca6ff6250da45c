"""
Value readers shared by the ``auth:`` parsers: header names, lists of
strings, URLs of key stores and JWKS.  Each records its problem on the node
and returns None.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple
from urllib.parse import urlsplit

from twistgate.config._node import Node
from twistgate.http import HOP_BY_HOP
from twistgate.policies.auth.base import is_token

# Headers the gateway manages itself: an identity header may not replace them.
_RESERVED = {name.lower() for name in HOP_BY_HOP} | {
    b"host",
    b"content-length",
    b"x-request-id",
    b"via",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"authorization",
    b"proxy-authorization",
    b"cookie",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- values ---------------------------------------------------------------


def header_name(node: Node) -> Optional[str]:
    """An HTTP field name the gateway may set or read."""
    text = node.string()
    if text is None:
        return None
    if not is_token(text):
        node.issue(f"{text!r} is not a valid HTTP header name")
        return None
    if text.lower().encode("ascii") in _RESERVED:
        node.issue(f"{text!r} is managed by the gateway and cannot be used here")
        return None
    return text


def strings(node: Node) -> Optional[Tuple[str, ...]]:
    """A list of non-empty strings."""
    items = node.sequence()
    if items is None:
        return None
    found = [item.string() for item in items]
    return None if any(v is None for v in found) else tuple(found)  # type: ignore[misc]


def one_or_more(node: Node) -> Optional[Tuple[str, ...]]:
    """A string, or a non-empty list of strings."""
    if node.kind == "list":
        values = strings(node)
        if values == ():
            node.issue("must not be empty")
            return None
        return values
    text = node.string()
    return (text,) if text is not None else None


def safe_text(node: Node) -> Optional[str]:
    text = node.string()
    if text is not None and _CONTROL.search(text):
        node.issue("must not contain control characters")
        return None
    return text


def non_negative(node: Node) -> Optional[float]:
    return node.duration(positive=False)


def jwks_url(node: Node) -> Optional[str]:
    text = node.string()
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        node.issue(f"expected an http:// or https:// URL, got {text!r}")
        return None
    return text


def store_url(node: Node) -> Optional[str]:
    text = node.string()
    if text is None:
        return None
    if text.startswith("sqlite:"):
        if not text[len("sqlite:") :]:
            node.issue("sqlite: needs a file path, e.g. sqlite:var/twistgate.db")
            return None
        return text
    if text.startswith(("postgresql://", "postgres://")):
        from twistgate.policies.auth.key_store_postgres import connect_arguments

        try:
            connect_arguments(text, 5)
        except (ValueError, TypeError):
            node.issue("invalid PostgreSQL URL (expected postgresql://user:password@host:port/database)")
            return None
        return text
    node.issue("unknown key store; expected sqlite:PATH or postgresql://user:password@host/database")
    return None
