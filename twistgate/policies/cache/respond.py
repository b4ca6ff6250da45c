"""
Responses built from a stored entry: whole (200...), 304 for a client's own
conditional request, and 206/416 for a byte range (RFC 9111 §4, RFC 9110
§13-§15).  Each carries `Age` (§5.1) and our `Cache-Status` member.
"""

from __future__ import annotations

from typing import List, Tuple

from twistgate.policies.cache.entry import Entry
from twistgate.messages import Response

#: What a 304 repeats from the 200 it stands for (RFC 9110 §15.4.5), plus Last-Modified.
_NOT_MODIFIED_FIELDS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified"}
)


def _age(entry: Entry, now: float) -> Tuple[bytes, bytes]:
    return (b"Age", b"%d" % int(entry.current_age(now)))


def whole(entry: Entry, now: float, status: bytes, head: bool) -> Response:
    headers: List[Tuple[bytes, bytes]] = list(entry.headers)
    headers.append(_age(entry, now))
    headers.append((b"Cache-Status", status))
    if entry.status not in (204, 304) and entry.status >= 200:
        headers.append((b"Content-Length", b"%d" % len(entry.body)))
    return Response(status=entry.status, headers=headers, body=b"" if head else entry.body)


def not_modified(entry: Entry, now: float, status: bytes) -> Response:
    headers = [pair for pair in entry.headers if pair[0].lower() in _NOT_MODIFIED_FIELDS]
    headers.append(_age(entry, now))
    headers.append((b"Cache-Status", status))
    return Response(status=304, headers=headers)


def partial(entry: Entry, now: float, status: bytes, first: int, last: int, head: bool) -> Response:
    size = len(entry.body)
    headers = [pair for pair in entry.headers if pair[0].lower() != b"content-range"]
    headers.append(_age(entry, now))
    headers.append((b"Cache-Status", status))
    if first < 0:
        headers.append((b"Content-Range", b"bytes */%d" % size))
        headers.append((b"Content-Length", b"0"))
        return Response(status=416, headers=headers)
    body = entry.body[first : last + 1]
    headers.append((b"Content-Range", b"bytes %d-%d/%d" % (first, last, size)))
    headers.append((b"Content-Length", b"%d" % len(body)))
    return Response(status=206, headers=headers, body=b"" if head else body)
