"""
HTTP dates (RFC 9110 §5.6.7): the three formats a recipient must accept.

Parsing is strict about layout (a date that is not one of the three forms
is invalid: RFC 9111 §5.3 then says "in the past") but, like most caches,
tolerant of letter case in day, month and zone names.
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Optional

from twisted.web.http import datetimeToString

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"(\d{2}):(\d{2}):(\d{2})"

_IMF = re.compile(rf"{_DAY}, (\d{{2}}) {_MONTH} (\d{{4}}) {_TIME} gmt\Z", re.I)
_RFC850 = re.compile(rf"{_LONG_DAY}, (\d{{2}})-{_MONTH}-(\d{{2}}) {_TIME} gmt\Z", re.I)
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} ([ \d]\d) {_TIME} (\d{{4}})\Z", re.I)


def parse_http_date(value: Optional[bytes], now: float = 0.0) -> Optional[float]:
    """
    Seconds since the epoch, or None when `value` is not an HTTP date.
    `now` resolves the two-digit years of the obsolete RFC 850 form.
    """
    if not value:
        return None
    text = value.decode("latin-1").strip()
    match = _IMF.match(text)
    if match:
        day, month, year, hour, minute, second = match.groups()
    else:
        match = _RFC850.match(text)
        if match:
            day, month, short_year, hour, minute, second = match.groups()
            year = str(_full_year(int(short_year), now))
        else:
            match = _ASCTIME.match(text)
            if not match:
                return None
            month, day, hour, minute, second, year = match.groups()
    try:
        numbers = (int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    if not (1 <= numbers[2] <= 31 and numbers[3] < 24 and numbers[4] < 60 and numbers[5] < 61):
        return None
    return float(calendar.timegm(numbers + (0, 0, 0)))


def _full_year(short: int, now: float) -> int:
    """RFC 9110 §5.6.7: a year more than 50 years ahead belongs to the last century."""
    this_year = _year_of(now)
    year = this_year - this_year % 100 + short
    if year > this_year + 50:
        year -= 100
    return year


def _year_of(seconds: float) -> int:
    return time.gmtime(seconds).tm_year


def format_http_date(seconds: float) -> bytes:
    """The IMF-fixdate form, the only one a sender may generate."""
    return datetimeToString(int(seconds))
