"""
Conditional and range requests answered from a stored response
(RFC 9110 §13 and §14).

Entity-tags compare weakly for `If-None-Match` (§13.1.2) and strongly for
`If-Range`.  Parsing is lenient in the ways real clients are sloppy (a
missing ``W/`` slash, unquoted tags) because a false match can only produce
a 304 for a tag the client itself sent.
"""

from __future__ import annotations

import re
from typing import Any, List, Optional, Tuple

from twistgate.policies.cache.dates import parse_http_date
from twistgate.policies.cache.directives import split_list
from twistgate.policies.cache.entry import Entry, values

CONDITIONALS = (b"If-None-Match", b"If-Modified-Since")
Saved = Tuple[Optional[List[bytes]], ...]

_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*\Z", re.I)


def opaque_tag(tag: str) -> str:
    """An entity-tag without weakness flag and quotes, for weak comparison."""
    tag = tag.strip()
    if tag[:2] in ("W/", "w/"):
        tag = tag[2:]
    elif tag[:2] in ('W"', 'w"', 'W\\', 'w\\'):
        tag = tag[1:].lstrip("\\")
    if len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"':
        tag = tag[1:-1]
    return tag


def is_weak(tag: bytes) -> bool:
    return tag[:1] in (b"W", b"w")


def quoted(tag: bytes) -> bytes:
    """A stored entity-tag in the form to send upstream (quotes added if missing)."""
    if is_weak(tag) or tag.startswith(b'"'):
        return tag
    return b'"' + tag + b'"'


def none_match(lines: List[bytes], entry: Entry) -> bool:
    """True when `If-None-Match` matches the entry (the answer is then 304)."""
    if entry.etag is None:
        return any(line.strip() == b"*" for line in lines)
    mine = opaque_tag(entry.etag.decode("latin-1"))
    for line in lines:
        for tag in split_list(line.decode("latin-1")):
            if tag == "*" or opaque_tag(tag) == mine:
                return True
    return False


def not_modified(headers: Any, entry: Entry, now: float) -> bool:
    """RFC 9110 §13.2.2 for GET/HEAD: If-None-Match, else If-Modified-Since."""
    inm = headers.getRawHeaders(b"If-None-Match")
    if inm is not None:
        return none_match(inm, entry)
    ims = headers.getRawHeaders(b"If-Modified-Since")
    if ims:
        since = parse_http_date(ims[0], now)
        if since is not None and since <= now:
            return entry.modified_time <= since
    return False


def byte_range(headers: Any, entry: Entry, now: float) -> Optional[Tuple[int, int]]:
    """
    The single byte range to serve from a stored 200, as (first, last); None
    to serve the whole response (no Range, several ranges, a failed
    If-Range, another unit).  (-1, -1) means unsatisfiable (416).
    """
    lines = headers.getRawHeaders(b"Range")
    if not lines or len(lines) != 1 or entry.status != 200:
        return None
    match = _RANGE.match(lines[0].decode("latin-1"))
    if match is None:
        return None
    if_range = headers.getRawHeaders(b"If-Range")
    if if_range and not _if_range_holds(if_range[0], entry, now):
        return None
    size = len(entry.body)
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            return (-1, -1)
        return (max(0, size - length), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignore the field
    if start >= size:
        return (-1, -1)
    return (start, min(end, size - 1))


def _if_range_holds(value: bytes, entry: Entry, now: float) -> bool:
    """If-Range: a strong entity-tag match, or the exact Last-Modified date."""
    text = value.strip()
    if text.startswith(b'"') or is_weak(text):
        return (
            entry.etag is not None
            and not is_weak(text)
            and not is_weak(entry.etag)
            and opaque_tag(text.decode("latin-1")) == opaque_tag(entry.etag.decode("latin-1"))
        )
    when = parse_http_date(text, now)
    return when is not None and entry.last_modified is not None and when == entry.last_modified


def use_validators(headers: Any, entry: Entry) -> Saved:
    """Put the entry's validators in place of the client's conditionals; return the client's."""
    saved = tuple(headers.getRawHeaders(name) for name in CONDITIONALS)
    for name in CONDITIONALS:
        headers.removeHeader(name)
    if entry.etag is not None:
        headers.setRawHeaders(b"If-None-Match", [quoted(entry.etag)])
    modified = values(entry.headers, b"last-modified")
    if modified:
        headers.setRawHeaders(b"If-Modified-Since", [modified[0]])
    return saved


def restore(headers: Any, saved: Saved) -> None:
    """Put the client's conditionals back (to answer it from the refreshed entry)."""
    for name, lines in zip(CONDITIONALS, saved):
        if lines is None:
            headers.removeHeader(name)
        else:
            headers.setRawHeaders(name, lines)


def same_representation(headers: Any, entry: Entry) -> bool:
    """RFC 9111 §4.3.5: may a HEAD response's fields update `entry`?"""
    etag = headers.getRawHeaders(b"ETag")
    modified = headers.getRawHeaders(b"Last-Modified")
    if etag and entry.etag is not None:
        return opaque_tag(etag[0].decode("latin-1")) == opaque_tag(entry.etag.decode("latin-1"))
    if modified or entry.last_modified is not None:
        return bool(modified) and modified[:1] == values(entry.headers, b"last-modified")[:1]
    return not etag and entry.etag is None
