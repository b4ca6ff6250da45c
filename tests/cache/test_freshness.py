"""Freshness lifetime and age of a stored response (RFC 9111 §4.2), on exact numbers."""

from __future__ import annotations

import pytest

from twistgate.policies.cache.dates import format_http_date
from twistgate.policies.cache.entry import HEURISTIC_MAX, Entry

NOW = 1_800_000_000.0


def entry(*headers, status=200, request_time=NOW, response_time=NOW, ttl=None, age=()):
    pairs = tuple((n.encode(), v.encode()) for n, v in headers)
    if not any(n.lower() == b"date" for n, _ in pairs):
        pairs += ((b"Date", format_http_date(response_time)),)
    return Entry(
        status=status,
        reason=None,
        headers=pairs,
        body=b"",
        request_time=request_time,
        response_time=response_time,
        default_ttl=ttl,
        age_lines=tuple(a.encode() for a in age),
    )


def date(offset):
    return format_http_date(NOW + offset).decode()


def test_s_maxage_wins_over_max_age_which_wins_over_expires():
    assert entry(("Cache-Control", "max-age=3600, s-maxage=1")).lifetime == 1
    assert entry(("Cache-Control", "max-age=1, s-maxage=3600")).lifetime == 3600
    assert entry(("Cache-Control", "max-age=10"), ("Expires", date(5000))).lifetime == 10
    assert entry(("Cache-Control", "max-age=0"), ("Expires", date(5000))).lifetime == 0


def test_expires_counts_from_date_not_from_receipt():
    """Date 400 s ahead and Expires 300 s ahead: already expired, whatever our clock says."""
    e = entry(("Expires", date(300)), ("Date", date(400)))
    assert e.lifetime == 0
    assert entry(("Expires", date(100)), ("Date", date(-50))).lifetime == 150


def test_invalid_expires_means_already_expired_and_invalid_date_means_receipt_time():
    assert entry(("Expires", "0")).lifetime == 0
    assert entry(("Expires", date(10)), ("Date", "foo")).lifetime == 10


def test_age_header_and_transit_delay_make_the_initial_age():
    """corrected_initial_age = max(apparent_age, Age + response_delay)."""
    e = entry(("Cache-Control", "max-age=100"), age=("30",), request_time=NOW - 2)
    assert e.initial_age == 32
    e = entry(("Cache-Control", "max-age=100"), ("Date", date(-40)), age=("30",))
    assert e.initial_age == 40  # the Date says older than Age does
    assert e.ttl(NOW) == 60 and e.ttl(NOW + 60) == 0 and e.current_age(NOW + 10) == 50


@pytest.mark.parametrize("age, fresh", [("abc", True), ("-7200", True), ("7200.0", True), ("0, 7200", True), ("7200", False)])
def test_unusable_age_values_are_ignored(age, fresh):
    assert (entry(("Cache-Control", "max-age=3600"), age=(age,)).ttl(NOW) > 0) is fresh


def test_age_greater_than_max_age_is_stale_on_arrival():
    assert entry(("Cache-Control", "max-age=10"), age=("15",)).ttl(NOW) < 0
    assert entry(("Expires", date(10)), ("Date", date(-10)), age=("25",)).ttl(NOW) < 0


def test_heuristic_is_a_tenth_of_the_time_since_last_modified_and_capped():
    assert entry(("Last-Modified", date(-1000))).lifetime == 100
    assert entry(("Last-Modified", date(-10 * 365 * 86400))).lifetime == HEURISTIC_MAX


def test_heuristics_only_for_cacheable_statuses_or_public():
    assert entry(("Last-Modified", date(-1000)), status=201).lifetime == 0
    assert entry(("Last-Modified", date(-1000)), ("Cache-Control", "public"), status=599).lifetime == 100
    assert entry(("Last-Modified", date(-1000)), status=404).lifetime == 100


def test_a_route_ttl_replaces_the_heuristic_only():
    assert entry(ttl=60).lifetime == 60
    assert entry(("Cache-Control", "max-age=5"), ttl=60).lifetime == 5
    assert entry(("Expires", date(-1)), ttl=60).lifetime == 0
    assert entry(status=201, ttl=60).lifetime == 0


def test_a_response_without_date_is_dated_on_receipt():
    e = Entry(status=200, reason=None, headers=((b"Cache-Control", b"max-age=5"),), body=b"", request_time=NOW, response_time=NOW)
    assert (b"Date", format_http_date(NOW)) in e.headers and e.date == NOW


def test_a_304_refreshes_fields_dates_and_age():
    """The 304's fields replace the stored ones (but never Content-Length/Encoding); its Date re-dates the entry."""
    old = entry(("Cache-Control", "max-age=1"), ("ETag", '"a"'), ("X-A", "1"), ("Content-Encoding", "gzip"), response_time=NOW - 100, request_time=NOW - 100)
    assert old.ttl(NOW) < 0
    fresh_pairs = ((b"Cache-Control", b"max-age=3600"), (b"X-A", b"2"), (b"Content-Encoding", b"identity"))
    new = old.refreshed(fresh_pairs, (), NOW, NOW, None)
    assert new.lifetime == 3600 and new.ttl(NOW) == 3600
    assert (b"X-A", b"2") in new.headers and (b"X-A", b"1") not in new.headers
    assert (b"Content-Encoding", b"gzip") in new.headers and new.etag == b'"a"'
