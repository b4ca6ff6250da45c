"""
Times and numbers as an access line writes them: the time stamp as
``datetime.isoformat(timespec="milliseconds")`` would write it, durations in
milliseconds as ``json.dumps(round(seconds * 1000.0, 3))`` would.  Both are
formatted on every line, so the common cases take a short way (the date of
the current second kept; the milliseconds from one integer) that gives the
same text; anything else takes the definition's way.
"""

from __future__ import annotations

import json
import math
from math import floor
from datetime import datetime, timezone
from typing import Any

#: [the whole second (a float), "YYYY-MM-DDTHH:MM:SS", the same as a JSON
#: line begins: '{"time":"YYYY-MM-DDTHH:MM:SS']: the date part of the second
#: lines are being written in (NaN at first: no time falls in it).  For a
#: time in [whole, whole + 1), ``time - whole`` is exact and ``int(time)``
#: is ``whole``: its microseconds round as `iso_time` rounds them.
second_prefix: list = [math.nan, "", ""]

#: ".000Z" to ".999Z": the end of a time stamp by its milliseconds.
MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


#: '.000Z","request_id":' to '.999Z","request_id":': the end of a JSON line's time stamp by its milliseconds.
JSON_MILLIS = tuple(f'{millis}","request_id":' for millis in MILLIS)


def json_time(seconds: float) -> str:
    """
    ``{"time":"<iso_time>","request_id":``: how a JSON access line begins,
    from the date of the second kept when the time falls in it.  floor(y +
    0.5) is round(y) but at a tie k + 0.5 with k even (one more): never
    across a millisecond (that needs k = 1000m - 1, odd), and never below
    round(y), so a time rounding up into the next second takes `iso_time`'s way.
    """
    second = second_prefix
    fraction = seconds - second[0]
    if 0.0 <= fraction < 1.0 and (micros := floor(fraction * 1e6 + 0.5)) < 1_000_000:
        return second[2] + JSON_MILLIS[micros // 1000]
    return f'{{"time":"{iso_time(seconds)}","request_id":'


def iso_time(seconds: float) -> str:
    """UTC ISO 8601 with milliseconds; the date part is formatted once a second."""
    # The same rounding as datetime.fromtimestamp: microseconds rounded, then
    # milliseconds truncated (isoformat(timespec="milliseconds")).
    whole = int(seconds)  # toward zero, as math.modf: seconds - whole is its exact fraction
    micros = round((seconds - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    if second_prefix[0] != whole:
        prefix = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        if whole < 0:
            return prefix + MILLIS[micros // 1000]  # (not kept: the short way assumes int() is the floor)
        second_prefix[:] = float(whole), prefix, '{"time":"' + prefix
    return second_prefix[1] + MILLIS[micros // 1000]


#: Below this many milliseconds (and from 0), the rounded value has at most 15
#: significant digits: the double it names prints back as those digits.
_MS_PRINTED_EXACTLY = 1e9

#: "0" to "999": whole milliseconds (most durations are under a second).
_WHOLE = tuple(str(n) for n in range(1000))

#: ".0", ".001" to ".999": thousandths of a millisecond as repr writes them (no trailing zeros).
_THOUSANDTHS = tuple("." + (f"{n:03d}".rstrip("0") or "0") for n in range(1000))


def milliseconds(seconds: float) -> str:
    """
    ``json.dumps(round(seconds * 1000.0, 3) + 0.0)``, in a fraction of its
    time.  ``round`` with digits rounds the exact binary value correctly;
    ``seconds * 1e6`` is within 3e-4 of that value times 1000 (below 1e12),
    so rounding it to an integer gives the same digits unless it lies within
    1e-3 of a tie: then ``"%.3f"`` (the same correctly rounded conversion as
    ``round``) decides.  Below `_MS_PRINTED_EXACTLY` the shortest repr of
    the rounded double is those digits without trailing zeros.  Negative,
    huge or non-finite values take the long way; anything but a number
    raises TypeError (`json_line` falls back).  A negative zero is written
    ``0.0`` (``+ 0.0``): PyPy's ``round`` drops its sign where CPython's
    keeps it, and the line is the same on both.
    """
    thousandths = seconds * 1e6
    if 0.0 <= thousandths < 1e12:  # (_MS_PRINTED_EXACTLY ms, spelled out: a lookup and a product less)
        rounded = floor(thousandths + 0.5)  # (math.floor: a third of int()'s cost)
        if -0.499 < thousandths - rounded < 0.499:
            whole = rounded // 1000
            return (_WHOLE[whole] if whole < 1000 else int.__repr__(whole)) + _THOUSANDTHS[rounded % 1000]
    ms = seconds * 1000.0 + 0.0
    if 0.0 <= ms < _MS_PRINTED_EXACTLY:
        text = ("%.3f" % ms).rstrip("0")
        return text + "0" if text[-1] == "." else text
    ms = round(ms, 3) + 0.0
    return float.__repr__(ms) if ms - ms == 0.0 else number(ms)


def number(value: Any) -> str:
    """A JSON number (or null), as json.dumps writes ints and floats."""
    if value is None:
        return "null"
    kind = value.__class__
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0.0:  # finite (json.dumps spells NaN and Infinity its own way)
        return float.__repr__(value)
    return json.dumps(value)
