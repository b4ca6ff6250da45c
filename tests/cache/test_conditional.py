"""Answering conditional and range requests from a stored response (RFC 9110 §13, §14)."""

from __future__ import annotations

import pytest
from twistgate.headers import Headers

from twistgate.policies.cache.conditional import byte_range, not_modified, quoted
from twistgate.policies.cache.dates import format_http_date
from twistgate.policies.cache.entry import Entry

NOW = 1_800_000_000.0


def stored(*headers, body=b"0123456789"):
    pairs = tuple((n.encode(), v.encode()) for n, v in headers) + ((b"Date", format_http_date(NOW)),)
    return Entry(status=200, reason=None, headers=pairs, body=body, request_time=NOW, response_time=NOW)


def ask(*headers):
    h = Headers()
    for name, value in headers:
        h.addRawHeader(name.encode(), value.encode())
    return h


@pytest.mark.parametrize(
    "etag, inm, match",
    [
        ('"abc"', '"abc"', True),
        ('"abc"', 'W/"abc"', True),  # weak comparison
        ('W/"abc"', '"abc"', True),
        ('"abc"', '"x", "abc", "y"', True),
        ('"abc"', "*", True),
        ('"abc"', '"abd"', False),
        ('"abc"', "abc", True),  # unquoted, leniently
        ('w/"abc"', 'w/"abc"', True),
    ],
)
def test_if_none_match(etag, inm, match):
    assert not_modified(ask(("If-None-Match", inm)), stored(("ETag", etag)), NOW) is match


def test_if_none_match_takes_precedence_over_if_modified_since():
    e = stored(("ETag", '"a"'), ("Last-Modified", format_http_date(NOW - 5000).decode()))
    since = format_http_date(NOW - 1).decode()
    assert not not_modified(ask(("If-None-Match", '"b"'), ("If-Modified-Since", since)), e, NOW)


def test_if_modified_since_against_last_modified_or_date():
    e = stored(("Last-Modified", format_http_date(NOW - 3000).decode()))
    assert not_modified(ask(("If-Modified-Since", format_http_date(NOW - 3000).decode())), e, NOW)
    assert not_modified(ask(("If-Modified-Since", format_http_date(NOW - 2000).decode())), e, NOW)
    assert not not_modified(ask(("If-Modified-Since", format_http_date(NOW - 4000).decode())), e, NOW)
    no_lm = stored()  # RFC 9111 §4.3.2: then the stored Date counts
    assert not_modified(ask(("If-Modified-Since", format_http_date(NOW).decode())), no_lm, NOW)
    assert not not_modified(ask(("If-Modified-Since", format_http_date(NOW - 10).decode())), no_lm, NOW)
    assert not not_modified(ask(("If-Modified-Since", "garbage")), e, NOW)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("bytes=0-1", (0, 1)),
        ("bytes=1-", (1, 9)),
        ("bytes=-1", (9, 9)),
        ("bytes=-50", (0, 9)),
        ("bytes=5-100", (5, 9)),
        ("bytes=10-", (-1, -1)),  # unsatisfiable
        ("bytes=0-1,3-4", None),  # several ranges: the whole response
        ("items=0-1", None),
        ("bytes=5-2", None),
    ],
)
def test_byte_ranges(spec, expected):
    assert byte_range(ask(("Range", spec)), stored(("ETag", '"s"')), NOW) == expected


def test_if_range_needs_a_strong_match():
    e = stored(("ETag", '"s"'))
    assert byte_range(ask(("Range", "bytes=0-1"), ("If-Range", '"s"')), e, NOW) == (0, 1)
    assert byte_range(ask(("Range", "bytes=0-1"), ("If-Range", '"t"')), e, NOW) is None
    assert byte_range(ask(("Range", "bytes=0-1"), ("If-Range", 'W/"s"')), e, NOW) is None


def test_validators_are_sent_quoted():
    assert quoted(b"abc") == b'"abc"' and quoted(b'W/"abc"') == b'W/"abc"' and quoted(b'"a"') == b'"a"'
