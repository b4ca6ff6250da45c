"""
The request-target and Host of a client's request (RFC 9112 §3.2).

A gateway must accept the absolute form (its authority replaces Host) and
exactly one Host on HTTP/1.1; anything else is a 400 before routing.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from twistgate.errors import BadRequest

__all__ = ["split_target"]


def split_target(path: bytes, query: bytes, hosts: Optional[List[bytes]], version: bytes) -> Tuple[bytes, bytes, bytes]:
    """
    ``(path, query, host)`` of a request: the origin-form path and query, and
    the one Host value (``b""`` when an HTTP/1.0 or HTTP/2 request has none).
    ``path`` and ``query`` are the target's two sides of its first ``?``, as
    every engine's `Downstream` holds them.

    :raises BadRequest: an invalid target, or not exactly one Host where one
        is required.
    """
    if not path.startswith(b"/"):
        path, authority = _absolute_form(path)
        hosts = [authority]
    if hosts is None or len(hosts) != 1:
        if version == b"HTTP/1.1" or hosts:
            raise BadRequest("Exactly one Host header is required.")
        return path, query, b""
    return path, query, hosts[0]


def _absolute_form(target: bytes) -> Tuple[bytes, bytes]:
    lower = target[:8].lower()
    for prefix in (b"http://", b"https://"):
        if lower.startswith(prefix):
            authority, slash, path = target[len(prefix) :].partition(b"/")
            if authority:
                return (slash + path if slash else b"/"), authority
    raise BadRequest("The request target must be an absolute path.")
