"""Tests for the unit parsers: durations, sizes and rates."""

import pytest

from twistgate.config import Rate, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("0s", 0.0),
        ("1m30s", 90.0),
        (" 10s ", 10.0),
    ],
)
def test_duration_forms(text, seconds):
    """Every documented unit, a sum of units and surrounding spaces parse to seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bare", ["30", 30, 1.5])
def test_duration_bare_number_hints_at_unit(bare):
    """A number without a unit is ambiguous; the message shows what to write."""
    with pytest.raises(ValueError, match=rf"write {bare}s"):
        parse_duration(bare)


@pytest.mark.parametrize(
    "text, message",
    [
        ("30sec", "unknown duration unit 'sec'"),
        ("5M", "unknown duration unit 'M'"),
        ("abc", "expected a duration like 30s"),
        ("", "expected a duration like 30s"),
        ("30 s", "expected a duration like 30s"),
        ("-5s", "cannot be negative"),
        ("-5", "cannot be negative"),
        ("1.s", "expected a duration like 30s"),
    ],
)
def test_duration_errors(text, message):
    """Malformed durations are refused with a message naming the problem."""
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}])
def test_duration_wrong_type(value):
    """Non-scalar and boolean values are refused, not coerced."""
    with pytest.raises(ValueError, match="expected a duration like 30s"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value, size",
    [
        ("512B", 512),
        ("64KiB", 64 * 1024),
        ("10MiB", 10 * 1024**2),
        ("1GiB", 1024**3),
        ("2TiB", 2 * 1024**4),
        ("1.5KiB", 1536),
        ("4096", 4096),
        (4096, 4096),
        (0, 0),
    ],
)
def test_size_forms(value, size):
    """Binary units and plain integers (bytes) parse to a byte count."""
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "text, suggestion",
    [
        ("10MB", "write 10MiB"),
        ("10KB", "write 10KiB"),
        ("1GB", "write 1GiB"),
        ("10k", "write 10KiB"),
        ("5mib", "write 5MiB"),
    ],
)
def test_size_decimal_units_suggest_binary(text, suggestion):
    """Decimal and mis-cased units are refused with the binary unit to use."""
    with pytest.raises(ValueError, match=suggestion):
        parse_size(text)


@pytest.mark.parametrize(
    "value, message",
    [
        ("10 furlongs", "unknown size unit 'furlongs'"),
        ("lots", "expected a size like 64KiB"),
        ("1.5B", "not a whole number of bytes"),
        ("1.5", "not a whole number of bytes"),
        (-1, "cannot be negative"),
        (True, "expected a size"),
        (1.5, "expected a size"),
    ],
)
def test_size_errors(value, message):
    """Malformed sizes are refused with a message naming the problem."""
    with pytest.raises(ValueError, match=message):
        parse_size(value)


@pytest.mark.parametrize(
    "text, rate",
    [
        ("100/s", Rate(100, 1.0)),
        ("100/min", Rate(100, 60.0)),
        ("5/h", Rate(5, 3600.0)),
        ("1000/d", Rate(1000, 86400.0)),
        ("100/5m", Rate(100, 300.0)),
        ("10/30s", Rate(10, 30.0)),
        ("7 / s", Rate(7, 1.0)),
    ],
)
def test_rate_forms(text, rate):
    """Named periods and any duration after the slash give a Rate."""
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "value, message",
    [
        ("100/m", "write min for minutes"),
        ("100/sec", "unknown rate period 'sec'"),
        ("0/s", "at least 1"),
        ("100", "expected a rate like 100/s"),
        ("/s", "expected a rate like 100/s"),
        ("1.5/s", "expected a rate like 100/s"),
        ("100/0s", "longer than zero"),
        ("100/5x", "bad period"),
        (100, "expected a rate like 100/min"),
    ],
)
def test_rate_errors(value, message):
    """Malformed rates are refused with a message naming the problem."""
    with pytest.raises(ValueError, match=message):
        parse_rate(value)


def test_rate_is_frozen():
    """Rate is a frozen value."""
    import attrs

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Rate(1, 1.0).count = 2  # type: ignore[misc]
