"""HTTP dates: the three forms RFC 9110 §5.6.7 requires, and nothing else."""

from __future__ import annotations

import calendar

import pytest

from twistgate.policies.cache.dates import format_http_date, parse_http_date

NOV_6_1994 = calendar.timegm((1994, 11, 6, 8, 49, 37, 0, 0, 0))


@pytest.mark.parametrize(
    "text",
    [
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
        b"SUN, 06 NOV 1994 08:49:37 gmt",  # letter case is forgiven
    ],
)
def test_the_three_formats(text):
    assert parse_http_date(text, now=NOV_6_1994) == NOV_6_1994


@pytest.mark.parametrize(
    "text",
    [
        b"0",
        b"Thu, 18 Aug 2050 02:01:18 UTC",
        b"Thu, 18 Aug 50 02:01:18 GMT",
        b"Thu 18 Aug 2050 02:01:18 GMT",
        b"Thu, 18  Aug  2050 02:01:18 GMT",
        b"Thu, 18-Aug-2050 02:01:18 GMT",
        b"Thu, 18 Aug 2050 02.01.18 GMT",
        b"Thu, 18 Aug 2050 2:01:18 GMT",
        b"Thu, 32 Aug 2050 02:01:18 GMT",
        b"",
    ],
)
def test_anything_else_is_invalid(text):
    assert parse_http_date(text) is None


def test_two_digit_years_more_than_fifty_years_ahead_are_last_century():
    now = calendar.timegm((2030, 1, 1, 0, 0, 0, 0, 0, 0))
    assert parse_http_date(b"Friday, 01-Jan-99 00:00:00 GMT", now) == calendar.timegm((1999, 1, 1, 0, 0, 0, 0, 0, 0))
    assert parse_http_date(b"Saturday, 01-Jan-50 00:00:00 GMT", now) == calendar.timegm((2050, 1, 1, 0, 0, 0, 0, 0, 0))


def test_format_round_trips():
    assert parse_http_date(format_http_date(NOV_6_1994)) == NOV_6_1994
