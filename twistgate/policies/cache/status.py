"""
The `Cache-Status` response field (RFC 9211) this cache appends, and the
short outcome put in ``request.state["cache"]`` for metrics and logs.
"""

from __future__ import annotations

from typing import Optional

#: request.state["cache"] values.
HIT, MISS, STALE, REVALIDATED, BYPASS = "hit", "miss", "stale", "revalidated", "bypass"


def cache_status(
    name: bytes,
    *,
    hit: bool = False,
    fwd: Optional[str] = None,
    fwd_status: Optional[int] = None,
    ttl: Optional[float] = None,
    stored: bool = False,
    collapsed: bool = False,
    detail: Optional[str] = None,
) -> bytes:
    """One list member, e.g. ``twistgate; fwd=uri-miss; fwd-status=200; stored``."""
    parts = [name]
    if hit:
        parts.append(b"hit")
    if fwd is not None:
        parts.append(b"fwd=" + fwd.encode("ascii"))
    if fwd_status is not None:
        parts.append(b"fwd-status=%d" % fwd_status)
    if ttl is not None:
        parts.append(b"ttl=%d" % int(ttl))  # truncated: a just-expired entry reads 0
    if stored:
        parts.append(b"stored")
    if collapsed:
        parts.append(b"collapsed")
    if detail is not None:
        parts.append(b"detail=" + detail.encode("ascii"))
    return b"; ".join(parts)
