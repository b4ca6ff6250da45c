"""
Cache keys (RFC 9111 §2, §4.1).

The primary key names the resource as the upstream sees it: the upstream
group, the scheme and host the client used, the normalised path as
forwarded and the raw query.  Keying on the forwarded path (rather than the
client's) lets a write route and a read route that reach the same upstream
resource share, and invalidate, one entry; keying on the upstream group
keeps two routes that rewrite to the same path on different services apart.

Under one primary key, variants are told apart by the request fields the
response's `Vary` names (normalised: lines combined, whitespace around
commas dropped), plus the route's own `key_headers` and, optionally, the
authenticated consumer.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple
from urllib.parse import urljoin, urlsplit

from twistgate.policies.cache.directives import split_list
from twistgate.pathnorm import InvalidPath, normalize_path

UriKey = Tuple[str, str, str, str, bytes]
VariantKey = Tuple[Optional[str], ...]


def uri_key(upstream: str, request: Any) -> UriKey:
    return (upstream, request.scheme, request.host, request.path, request.query)


def vary_names(lines: Optional[Sequence[bytes]]) -> Optional[Tuple[str, ...]]:
    """The field names a response varies on, lower-cased; None for `Vary: *` (never matches)."""
    names = []
    for line in lines or ():
        for name in split_list(line.decode("latin-1")):
            name = name.lower()
            if name == "*":
                return None
            if name not in names:
                names.append(name)
    return tuple(sorted(names))


def field_value(headers: Any, name: str) -> Optional[str]:
    """A request field normalised for comparison: None when absent."""
    lines = headers.getRawHeaders(name.encode("latin-1"))
    if lines is None:
        return None
    return ",".join(split_list(",".join(line.decode("latin-1") for line in lines)))


def variant_key(headers: Any, names: Tuple[str, ...], extra: Tuple[Optional[str], ...]) -> VariantKey:
    return tuple(field_value(headers, name) for name in names) + extra


def location_key(value: bytes, request: Any, upstream: str) -> Optional[UriKey]:
    """
    The key of a `Location` / `Content-Location` target, resolved against
    the request; None for another origin (RFC 9111 §4.4 forbids invalidating
    those) or an unusable reference.
    """
    try:
        text = value.decode("ascii").strip()
        base = f"{request.scheme}://{request.host}{request.path}"
        target = urlsplit(urljoin(base, text))
        host = (target.hostname or "").lower()
        if target.scheme != request.scheme or host != request.host:
            return None
        path = normalize_path((target.path or "/").encode("ascii"))
    except (UnicodeError, ValueError, InvalidPath):
        return None
    return (upstream, request.scheme, request.host, path, target.query.encode("ascii"))
