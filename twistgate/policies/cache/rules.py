"""
Which responses may be stored and when a stored one may be reused
(RFC 9111 §3, §3.5, §4.2.4; RFC 5861 for the stale-* extensions).

Each function answers from parsed values only; the stage asks them per
request, so they hold no state and parse nothing.
"""

from __future__ import annotations

from typing import Optional

from twistgate.policies.cache.directives import RequestDirectives, ResponseDirectives
from twistgate.policies.cache.entry import HEURISTIC_STATUSES, UNDERSTOOD_STATUSES, Entry

#: Safe methods (RFC 9110 §9.2.1, plus WebDAV's and SEARCH): everything else invalidates.
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PROPFIND", b"REPORT", b"SEARCH"})
#: Final statuses never stored: partial content needs combining, 304 is not a representation.
NEVER_STORED = frozenset({206, 304})


def refusal(
    status: int,
    directives: ResponseDirectives,
    *,
    has_expires: bool,
    authorized: bool,
    vary: Optional[tuple],
    listed: bool = False,
) -> Optional[str]:
    """
    Why a response to a GET may not be stored (a short token for
    Cache-Status ``detail``), or None when RFC 9111 §3 allows it.
    `listed`: the route's ``ttl`` names this status, which stands for an
    explicit lifetime (as nginx's ``proxy_cache_valid`` does).
    """
    if status < 200 or status in NEVER_STORED:
        return "status"
    no_store = directives.no_store
    if directives.must_understand:
        if status not in UNDERSTOOD_STATUSES:
            return "must-understand"
        no_store = False  # §5.2.2.3: understood, so no-store was only the fallback
    if no_store:
        return "no-store"
    if directives.private:
        return "private"
    if authorized and not (directives.public or directives.must_revalidate or directives.s_maxage is not None):
        return "authorization"  # §3.5
    if vary is None:
        return "vary-star"
    if not (directives.explicit_lifetime or has_expires or directives.public or listed or status in HEURISTIC_STATUSES):
        return "status"
    return None


def worth_storing(entry: Entry, stale_while_revalidate: float, stale_if_error: float) -> bool:
    """A response that can never be reused fresh, validated or stale is not kept."""
    if entry.has_validator:
        return True
    if entry.directives.no_cache:
        return False  # every use needs a validation it has no validator for
    if entry.lifetime > 0:
        return True
    if entry.directives.forbids_stale:
        return False
    return bool(
        stale_while_revalidate > 0
        or stale_if_error > 0
        or entry.directives.stale_while_revalidate
        or entry.directives.stale_if_error
    )


def fresh_for(entry: Entry, request: RequestDirectives, now: float) -> bool:
    """May `entry` answer this request without contacting the upstream (§4.2, §5.2.1)?"""
    if entry.directives.no_cache or request.no_cache:
        return False
    age = entry.current_age(now)
    if request.max_age is not None and age > request.max_age:
        return False
    left = entry.lifetime - age
    if left > 0:
        return request.min_fresh is None or left >= request.min_fresh
    # Stale: only a client's max-stale allows it, never against the origin's wishes.
    return (
        request.max_stale is not None
        and request.min_fresh is None
        and not entry.directives.forbids_stale
        and -left <= request.max_stale
    )


def stale_while_revalidate(entry: Entry, request: RequestDirectives, now: float, default: float) -> bool:
    """RFC 5861 §3: serve stale now and refresh in the background."""
    if entry.directives.forbids_stale or request.no_cache or request.max_age is not None or request.min_fresh is not None:
        return False
    window = entry.directives.stale_while_revalidate
    if window is None:
        window = default
    return 0 <= -entry.ttl(now) <= window and window > 0


def stale_if_error(entry: Entry, request: Optional[RequestDirectives], now: float, default: float) -> bool:
    """RFC 5861 §4: serve stale when the upstream fails (never against must-revalidate & co)."""
    if entry.directives.forbids_stale:
        return False
    window = entry.directives.stale_if_error
    if window is None:
        window = default
    if request is not None and request.stale_if_error is not None:
        window = max(window, request.stale_if_error)
    return window > 0 and -entry.ttl(now) <= window
