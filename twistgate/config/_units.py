"""
Durations, sizes and rates as users write them (``30s``, ``10MiB``, ``100/min``).

A number without a unit is refused for durations because ``timeout: 30`` could
mean seconds or milliseconds; sizes take a plain integer as bytes because that
is unambiguous.  Every error is a `ValueError` whose message says what to write
instead, so the loader can show it as is.
"""

from __future__ import annotations

import re
from decimal import Decimal

from twistgate.config.model import Rate

__all__ = ["parse_duration", "parse_size", "parse_rate"]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([a-zA-Z]+)")
_NUMBER = re.compile(r"\+?\d+(?:\.\d+)?")

_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
# What people write by habit, mapped to the binary unit we mean.
_SIZE_LOOKALIKES = {
    "b": "B",
    "k": "KiB", "kb": "KiB", "kib": "KiB",
    "m": "MiB", "mb": "MiB", "mib": "MiB",
    "g": "GiB", "gb": "GiB", "gib": "GiB",
    "t": "TiB", "tb": "TiB", "tib": "TiB",
}  # fmt: skip
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")

_RATE_PERIODS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"(\d+)\s*/\s*(\S+)")


def parse_duration(value: "str | int | float") -> float:
    """
    Seconds from ``250ms``, ``30s``, ``1.5s``, ``5m``, ``1h``, ``1d`` or a
    sum of those written together (``1m30s``).

    :raises ValueError: for a bare number, an unknown unit or anything else.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a duration like 30s, got {type(value).__name__}")
    text = str(value).strip()
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative, got {text!r}")
    if _NUMBER.fullmatch(text):
        raise ValueError(
            f"a duration needs a unit: write {text}s (or {text}ms); "
            "units are ms, s, m, h and d"
        )
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"expected a duration like 30s, 250ms or 5m, got {text!r}")
    seconds = 0.0
    for number, unit in parts:
        if unit not in _DURATION_UNITS:
            raise ValueError(
                f"unknown duration unit {unit!r} in {text!r}; use ms, s, m, h or d"
            )
        seconds += float(number) * _DURATION_UNITS[unit]
    return seconds


def parse_size(value: "str | int") -> int:
    """
    Bytes from ``512B``, ``64KiB``, ``10MiB``, ``1GiB`` or a plain integer.

    Decimal units (``MB``, ``KB``) are refused rather than guessed: the
    message names the binary unit to write instead.

    :raises ValueError: for anything that is not a whole number of bytes.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a size like 64KiB or 10MiB, got {type(value).__name__}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    text = value.strip()
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a size like 64KiB or 10MiB, got {text!r}")
    number, unit = match.groups()
    unit = unit or "B"
    if unit not in _SIZE_UNITS:
        meant = _SIZE_LOOKALIKES.get(unit.lower())
        if meant is None:
            raise ValueError(
                f"unknown size unit {unit!r} in {text!r}; use B, KiB, MiB, GiB or TiB"
            )
        raise ValueError(
            f"ambiguous size unit {unit!r} in {text!r}: write {number}{meant} "
            f"(1 {meant} = {_SIZE_UNITS[meant]} bytes)"
        )
    size = Decimal(number) * _SIZE_UNITS[unit]
    if size != size.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(size)


def parse_rate(value: str) -> Rate:
    """
    A `Rate` from ``100/s``, ``100/min``, ``5/h``, ``1000/d`` or ``100/5m``
    (any duration after the slash).

    :raises ValueError: for a missing count, a zero count or an unknown period.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a rate like 100/min, got {type(value).__name__}")
    text = value.strip()
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a rate like 100/s, 100/min or 5/h, got {text!r}")
    count, period = int(match.group(1)), match.group(2)
    if count < 1:
        raise ValueError(f"a rate needs a count of at least 1, got {text!r}")
    if period in _RATE_PERIODS:
        return Rate(count, _RATE_PERIODS[period])
    if period.isalpha():
        hint = " (write min for minutes)" if period in ("m", "minute", "mins") else ""
        raise ValueError(
            f"unknown rate period {period!r} in {text!r}; use s, min, h, d "
            f"or a duration such as 5m{hint}"
        )
    try:
        per = parse_duration(period)
    except ValueError as e:
        raise ValueError(f"bad period in rate {text!r}: {e}") from None
    if per <= 0:
        raise ValueError(f"a rate's period must be longer than zero, got {text!r}")
    return Rate(count, per)
