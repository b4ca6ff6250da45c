"""
`Cache-Control` parsing (RFC 9111 §5.2), for responses and requests.

The field is a comma-separated list of ``name[=value]`` elements, possibly
over several lines; values are tokens or quoted strings (commas inside
quotes do not split).  Malformed elements (``max-age =5``, ``max-age= 5``)
are ignored as a whole, names are case-insensitive, and when a directive
repeats the first occurrence wins (§4.2.1).  Arguments that are not
delta-seconds make the directive *invalid*: an invalid ``max-age`` or
``s-maxage`` means "stale now" rather than "absent", so a typo never makes
a response fresher than its origin meant.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, Iterable, Optional, Sequence

import attrs

from twistgate import fields

#: RFC 9111 §1.2.2: a delta-seconds too large to represent is 2^31.
DELTA_MAX = 2147483648

_DIGITS = re.compile(r"[0-9]+\Z")

# The list syntax is shared with other fields (Accept-Encoding, Connection...).
split_list = fields.split_list
parse = fields.parse_directives


def delta_seconds(value: Optional[str]) -> Optional[int]:
    """A non-negative integer number of seconds (capped at 2^31), or None if invalid."""
    if value is None or not _DIGITS.match(value):
        return None
    return min(int(value), DELTA_MAX)


def _seconds_or_zero(found: Dict[str, Optional[str]], name: str) -> Optional[int]:
    """Absent: None; present but invalid: 0 (stale); else the seconds."""
    if name not in found:
        return None
    seconds = delta_seconds(found[name])
    return 0 if seconds is None else seconds


def _field_names(value: Optional[str]) -> FrozenSet[str]:
    return frozenset(name.lower() for name in split_list(value or ""))


@attrs.frozen(kw_only=True)
class ResponseDirectives:
    """What a shared cache needs from a response's `Cache-Control`."""

    no_store: bool = False
    no_cache: bool = False  # unqualified: store, but validate before every use
    no_cache_fields: FrozenSet[str] = frozenset()  # qualified: reuse without these fields
    private: bool = False
    private_fields: FrozenSet[str] = frozenset()
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    no_transform: bool = False
    max_age: Optional[int] = None
    s_maxage: Optional[int] = None
    stale_while_revalidate: Optional[int] = None
    stale_if_error: Optional[int] = None

    @property
    def explicit_lifetime(self) -> bool:
        return self.max_age is not None or self.s_maxage is not None

    @property
    def forbids_stale(self) -> bool:
        """RFC 9111 §4.2.4: never serve stale without validating (s-maxage implies proxy-revalidate)."""
        return self.must_revalidate or self.proxy_revalidate or self.s_maxage is not None or self.no_cache


def response_directives(lines: Optional[Sequence[bytes]]) -> ResponseDirectives:
    if not lines:
        return NO_RESPONSE_DIRECTIVES
    return response_directives_of(parse(lines))


def response_directives_of(found: Dict[str, Optional[str]]) -> ResponseDirectives:
    """Directives from parsed ``name -> argument`` pairs (Cache-Control's, or a targeted field's)."""
    no_cache = "no-cache" in found
    private = "private" in found
    return ResponseDirectives(
        no_store="no-store" in found,
        no_cache=no_cache and found["no-cache"] is None,
        no_cache_fields=_field_names(found["no-cache"]) if no_cache else frozenset(),
        private=private and found["private"] is None,
        private_fields=_field_names(found["private"]) if private else frozenset(),
        public="public" in found,
        must_revalidate="must-revalidate" in found,
        proxy_revalidate="proxy-revalidate" in found,
        must_understand="must-understand" in found,
        no_transform="no-transform" in found,
        max_age=_seconds_or_zero(found, "max-age"),
        s_maxage=_seconds_or_zero(found, "s-maxage"),
        stale_while_revalidate=delta_seconds(found.get("stale-while-revalidate")),
        stale_if_error=delta_seconds(found.get("stale-if-error")),
    )


NO_RESPONSE_DIRECTIVES = ResponseDirectives()


@attrs.frozen(kw_only=True)
class RequestDirectives:
    """The request directives of RFC 9111 §5.2.1 (and RFC 5861's stale-if-error)."""

    no_store: bool = False
    no_cache: bool = False
    only_if_cached: bool = False
    max_age: Optional[int] = None
    min_fresh: Optional[int] = None
    max_stale: Optional[int] = None  # DELTA_MAX for a bare max-stale (any staleness)
    stale_if_error: Optional[int] = None


def request_directives(lines: Optional[Sequence[bytes]]) -> RequestDirectives:
    if not lines:
        return NO_REQUEST_DIRECTIVES
    found = parse(lines)
    max_stale: Optional[int] = None
    if "max-stale" in found:
        value = found["max-stale"]
        max_stale = DELTA_MAX if value is None else delta_seconds(value)
    return RequestDirectives(
        no_store="no-store" in found,
        no_cache="no-cache" in found,
        only_if_cached="only-if-cached" in found,
        max_age=delta_seconds(found.get("max-age")),
        min_fresh=delta_seconds(found.get("min-fresh")),
        max_stale=max_stale,
        stale_if_error=delta_seconds(found.get("stale-if-error")),
    )


NO_REQUEST_DIRECTIVES = RequestDirectives()


def first_member(lines: Optional[Iterable[bytes]]) -> Optional[str]:
    """The first member of a list-based field that should be a singleton (Age, RFC 9111 §5.1)."""
    for line in lines or ():
        for item in split_list(line.decode("latin-1")):
            return item
    return None
