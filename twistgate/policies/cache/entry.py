"""
A stored response and its age and freshness (RFC 9111 §4.2).

An `Entry` is built once when a response is stored (or refreshed by a 304),
with everything the request path needs already parsed: directives,
validators, the freshness lifetime and the corrected initial age.  Serving
it is then arithmetic: ``current_age = initial_age + (now - response_time)``.
"""

from __future__ import annotations

from typing import Any, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from twistgate.policies.cache.dates import format_http_date, parse_http_date
from twistgate.policies.cache.directives import (
    ResponseDirectives,
    delta_seconds,
    first_member,
)
from twistgate.policies.cache.targeted import headers_lookup, pairs_lookup, policy

#: The RFC 9213 target list (lower-case names) and the targeted fields that
#: are the gateway's own (kept for revalidation, never served).
Targets = Tuple[Tuple[bytes, ...], Tuple[bytes, ...]]
NO_TARGETS: Targets = ((), ())

HeaderPairs = Tuple[Tuple[bytes, bytes], ...]

#: RFC 9110 §15.1: cacheable by default (heuristic freshness allowed).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
#: Final status codes whose caching rules this cache implements (for must-understand).
UNDERSTOOD_STATUSES = frozenset(
    {200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 307, 308}
    | {400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426}
    | {500, 501, 502, 503, 504, 505}
)
#: RFC 9111 §4.2.2's "typical" heuristic: 10% of the time since Last-Modified...
HEURISTIC_FRACTION = 0.1
#: ...capped, so an old document does not stay fresh for months.
HEURISTIC_MAX = 86400.0
#: Fixed per-entry bookkeeping counted against the memory bound.
ENTRY_OVERHEAD = 256

#: Per-message fields, never stored (hop-by-hop ones are already gone).
NOT_STORED = frozenset(
    {
        b"age",
        b"connection",
        b"content-length",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authentication-info",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"x-request-id",
    }
)
#: Not replaced by a 304's or HEAD's fields: the stored body depends on them (RFC 9111 §3.2).
NOT_UPDATED = NOT_STORED | {b"content-encoding", b"content-range"}


def values(headers: Iterable[Tuple[bytes, bytes]], lower_name: bytes) -> List[bytes]:
    return [value for name, value in headers if name.lower() == lower_name]


def snapshot(raw_headers: Iterable[Tuple[bytes, Sequence[bytes]]], directives: ResponseDirectives) -> HeaderPairs:
    """The fields worth storing, as pairs, without `no-cache="..."` / `private="..."` ones."""
    omit: FrozenSet[bytes] = NOT_STORED
    named = directives.no_cache_fields | directives.private_fields
    if named:
        omit = omit | {name.encode("latin-1") for name in named}
    return tuple(
        (name, value) for name, lines in raw_headers if name.lower() not in omit for value in lines
    )


def merge(stored: HeaderPairs, fresh: HeaderPairs) -> HeaderPairs:
    """RFC 9111 §3.2: each field of the newer response replaces the stored one."""
    replaced = {name.lower() for name, _ in fresh if name.lower() not in NOT_UPDATED}
    kept = tuple(pair for pair in stored if pair[0].lower() not in replaced)
    return kept + tuple(pair for pair in fresh if pair[0].lower() in replaced)


class Entry:
    """One stored response (a GET's), ready to serve."""

    __slots__ = (
        "status",
        "reason",
        "headers",
        "body",
        "directives",
        "request_time",
        "response_time",
        "date",
        "initial_age",
        "lifetime",
        "listed",
        "etag",
        "last_modified",
        "vary",
        "size",
        "last_used",
        "targets",
        "own",
    )

    def __init__(
        self,
        *,
        status: int,
        reason: Optional[bytes],
        headers: HeaderPairs,
        body: bytes,
        request_time: float,
        response_time: float,
        default_ttl: Optional[float] = None,
        vary: Tuple[str, ...] = (),
        age_lines: Sequence[bytes] = (),
        targets: Targets = NO_TARGETS,
        listed: bool = False,
    ) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        self.vary = vary
        self.request_time = request_time
        self.response_time = response_time
        self.targets = targets
        self.directives, targeted = policy(pairs_lookup(headers), targets[0])
        directives = self.directives
        private = targets[1]
        self.own: HeaderPairs = tuple(pair for pair in headers if pair[0].lower() in private)
        if self.own:
            headers = tuple(pair for pair in headers if pair[0].lower() not in private)
        dates = values(headers, b"date")
        date = parse_http_date(dates[0], response_time) if dates else None
        if not dates:
            # RFC 9110 §6.6.1: the gateway dates a response that came without one.
            headers = headers + ((b"Date", format_http_date(response_time)),)
            date = float(int(response_time))
        self.headers = headers
        self.date = date if date is not None else response_time
        age = delta_seconds(first_member(age_lines)) or 0  # Age itself is never stored
        apparent_age = max(0.0, response_time - self.date)
        self.initial_age = max(apparent_age, age + (response_time - request_time))
        etags = values(headers, b"etag")
        self.etag: Optional[bytes] = etags[0].strip() if etags else None
        modified = values(headers, b"last-modified")
        self.last_modified = parse_http_date(modified[0], response_time) if modified else None
        self.listed = listed
        # RFC 9213 §2.2: a targeted field replaces Cache-Control *and* Expires.
        self.lifetime = self._lifetime(directives, [] if targeted else values(headers, b"expires"), default_ttl)
        self.size = ENTRY_OVERHEAD + len(body) + sum(len(n) + len(v) + 4 for n, v in headers)
        self.last_used = 0

    def _lifetime(self, directives: ResponseDirectives, expires: List[bytes], default_ttl: Optional[float]) -> float:
        """RFC 9111 §4.2.1 for a shared cache; `default_ttl` stands in for the heuristic."""
        if directives.s_maxage is not None:
            return float(directives.s_maxage)
        if directives.max_age is not None:
            return float(directives.max_age)
        if expires:
            when = parse_http_date(expires[0], self.response_time)
            return 0.0 if when is None else max(0.0, when - self.date)
        if self.status in HEURISTIC_STATUSES or directives.public or self.listed:
            if default_ttl is not None:
                return default_ttl
            if self.last_modified is not None:
                return min(HEURISTIC_MAX, max(0.0, (self.date - self.last_modified) * HEURISTIC_FRACTION))
        return 0.0

    # -- age and freshness ------------------------------------------------

    def current_age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.response_time)

    def ttl(self, now: float) -> float:
        """Seconds of freshness left; negative once stale."""
        return self.lifetime - self.current_age(now)

    @property
    def has_validator(self) -> bool:
        return self.etag is not None or self.last_modified is not None

    @property
    def modified_time(self) -> float:
        """What If-Modified-Since compares against (RFC 9111 §4.3.2)."""
        return self.last_modified if self.last_modified is not None else self.date

    def refreshed(
        self,
        fresh: HeaderPairs,
        age_lines: Sequence[bytes],
        request_time: float,
        response_time: float,
        default_ttl: Optional[float],
    ) -> "Entry":
        """This entry updated by a 304 (or HEAD) response's fields (and dated by it)."""
        if not values(fresh, b"date"):
            fresh = fresh + ((b"Date", format_http_date(response_time)),)
        return Entry(
            status=self.status,
            reason=self.reason,
            headers=merge(self.headers + self.own, fresh),
            body=self.body,
            request_time=request_time,
            response_time=response_time,
            default_ttl=default_ttl,
            vary=self.vary,
            age_lines=age_lines,
            targets=self.targets,
            listed=self.listed,
        )

    def refreshed_by(self, headers: Any, request_time: float, response_time: float, default_ttl: Optional[float]) -> "Entry":
        """This entry updated by a 304's (or a HEAD 200's) `Headers`."""
        directives, _ = policy(headers_lookup(headers), self.targets[0])
        fresh = snapshot(headers.getAllRawHeaders(), directives)
        return self.refreshed(fresh, headers.getRawHeaders(b"Age") or (), request_time, response_time, default_ttl)

    @classmethod
    def from_response(
        cls,
        status: int,
        reason: Optional[bytes],
        headers: Any,
        directives: ResponseDirectives,
        body: bytes,
        *,
        request_time: float,
        response_time: float,
        default_ttl: Optional[float],
        vary: Tuple[str, ...],
        targets: Targets = NO_TARGETS,
        listed: bool = False,
    ) -> "Entry":
        """A new entry from an upstream response's status and `Headers`."""
        return cls(
            targets=targets,
            status=status,
            reason=reason,
            headers=snapshot(headers.getAllRawHeaders(), directives),
            body=body,
            request_time=request_time,
            response_time=response_time,
            default_ttl=default_ttl,
            vary=vary,
            age_lines=headers.getRawHeaders(b"Age") or (),
            listed=listed,
        )

    def __repr__(self) -> str:
        return f"<Entry {self.status} {len(self.body)}B lifetime={self.lifetime}>"
