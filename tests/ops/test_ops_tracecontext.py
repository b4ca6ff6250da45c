"""W3C Trace Context parsing, against the cases of the W3C test suite (trace-context/test/test.py)."""

from types import SimpleNamespace

import pytest

from twistgate.ops import tracecontext
from twistgate.ops.tracecontext import new_trace_ids, parse_traceparent, parse_tracestate, random_hex, ratio_sampled

VALID = b"00-12345678901234567890123456789012-1234567890123456-01"


def test_valid_traceparent():
    parent = parse_traceparent([VALID])
    assert (parent.trace_id, parent.parent_id, parent.flags, parent.sampled) == (
        "12345678901234567890123456789012", "1234567890123456", 1, True,
    )
    assert parent.header() == VALID


@pytest.mark.parametrize(
    "value",
    [
        b" 00-12345678901234567890123456789012-1234567890123456-01",
        b"\t00-12345678901234567890123456789012-1234567890123456-01 \t",
        b"cc-12345678901234567890123456789012-1234567890123456-01",
        b"cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
    ],
)
def test_accepted_forms(value):
    """Optional whitespace around, and future versions with more fields after a dash."""
    assert parse_traceparent([value]).trace_id == "12345678901234567890123456789012"


@pytest.mark.parametrize(
    "value",
    [
        b"00-12345678901234567890123456789012-1234567890123456-01.",
        b"00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
        b"cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
        b"ff-12345678901234567890123456789012-1234567890123456-01",
        b".0-12345678901234567890123456789012-1234567890123456-01",
        b"000-12345678901234567890123456789012-1234567890123456-01",
        b"0-12345678901234567890123456789012-1234567890123456-01",
        b"00-00000000000000000000000000000000-1234567890123456-01",
        b"00-.2345678901234567890123456789012-1234567890123456-01",
        b"00-123456789012345678901234567890123-1234567890123456-01",
        b"00-1234567890123456789012345678901-1234567890123456-01",
        b"00-12345678901234567890123456789012-0000000000000000-01",
        b"00-12345678901234567890123456789012-123456789012345.-01",
        b"00-12345678901234567890123456789012-12345678901234567-01",
        b"00-12345678901234567890123456789012-123456789012345-01",
        b"00-12345678901234567890123456789012-1234567890123456-.0",
        b"00-12345678901234567890123456789012-1234567890123456-001",
        b"00-12345678901234567890123456789012-1234567890123456-1",
        b"00-12345678901234567890123456789012-1234567890123456-0G",
        b"00-ABCDEF78901234567890123456789012-1234567890123456-01",  # upper case
        b"",
    ],
)
def test_invalid_traceparent(value):
    assert parse_traceparent([value]) is None


def test_two_traceparent_fields_are_invalid():
    assert parse_traceparent([VALID, VALID]) is None
    assert parse_traceparent(None) is None


def test_tracestate_combines_fields_in_order():
    assert parse_tracestate([b"foo=1,bar=2", b"rojo=1,congo=2", b"baz=3"]) == b"foo=1,bar=2,rojo=1,congo=2,baz=3"


def test_tracestate_whitespace_and_empty_members():
    assert parse_tracestate([b"foo=1 \t , \t bar=2, \t baz=3"]) == b"foo=1,bar=2,baz=3"
    assert parse_tracestate([b"", b"foo=1"]) == b"foo=1"
    assert parse_tracestate([b""]) is None


def test_tracestate_allowed_characters():
    key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
    value = "".join(map(chr, range(0x20, 0x2C))) + "".join(map(chr, range(0x2D, 0x3D))) + "".join(map(chr, range(0x3E, 0x7F)))
    assert parse_tracestate([f"{key}={value}".encode()]) == f"{key}={value}".encode()
    assert parse_tracestate([f"{key}@a-z0-9_-*/={value}".encode()]) is not None


@pytest.mark.parametrize(
    "fields",
    [
        [b"foo=1,foo=1"], [b"foo=1,foo=2"], [b"foo=1", b"foo=2"],
        [b"foo =1"], [b"FOO=1"], [b"foo.bar=1"],
        [b"foo@=1,bar=2"], [b"@foo=1,bar=2"], [b"foo@@bar=1,bar=2"], [b"foo@bar@baz=1,bar=2"],
        [b"foo=1", b"z" * 257 + b"=1"], [b"foo=1", b"t" * 242 + b"@v=1"], [b"foo=1", b"t@" + b"v" * 15 + b"=1"],
        [",".join(f"bar{i:02d}={i:02d}" for i in range(1, 34)).encode()],
    ],
)
def test_invalid_tracestate_is_discarded_whole(fields):
    assert parse_tracestate(fields) is None


def test_tracestate_limits_accepted():
    assert parse_tracestate([b"foo=1", b"z" * 256 + b"=1"]) is not None
    assert parse_tracestate([b"foo=1", b"t" * 241 + b"@" + b"v" * 14 + b"=1"]) is not None
    assert parse_tracestate([",".join(f"bar{i:02d}={i:02d}" for i in range(1, 33)).encode()]) is not None


def test_random_ids_are_never_zero():
    values = iter([b"\x00" * 8, b"\x00" * 7 + b"\x01"])
    assert random_hex(8, lambda n: next(values)) == "0000000000000001"


def test_a_new_trace_draws_both_ids_at_once_and_neither_is_zero(monkeypatch):
    """One draw of 24 bytes: 32 hex digits of trace id, 16 of span id; a draw with a zero id is thrown away."""
    draws = iter(["0" * 32 + "1" * 16, "2" * 32 + "0" * 16, "a" * 32 + "b" * 16])
    monkeypatch.setattr(tracecontext, "HEX", SimpleNamespace(take=lambda nbytes: next(draws) if nbytes == 24 else "?"))
    assert new_trace_ids() == ("a" * 32, "b" * 16)


def test_new_trace_ids_are_lowercase_hex_of_the_w3c_widths():
    trace_id, span_id = new_trace_ids()
    assert len(trace_id) == 32 and len(span_id) == 16
    assert parse_traceparent([f"00-{trace_id}-{span_id}-01".encode()]) is not None
    assert new_trace_ids() != (trace_id, span_id)


def test_ratio_sampling_is_deterministic_by_trace_id():
    low, high = "0" * 16 + "0000000000000001", "0" * 16 + "ffffffffffffffff"
    assert ratio_sampled(low, 0.5) and not ratio_sampled(high, 0.5)
    assert ratio_sampled(high, 1.0) and not ratio_sampled(low, 0.0)


def test_new_traceparents_are_valid_w3c_values_of_sampled_traces():
    values = tracecontext.new_traceparents(64)
    assert len(values) == 64 and len(set(values)) == 64
    for value in values:
        parent = parse_traceparent([value])
        assert parent is not None and parent.flags == 1
        assert parent.header() == value


def test_new_traceparents_never_carry_an_all_zero_id(monkeypatch):
    """A draw with a zero trace id or a zero span id is drawn again (ids must not be all zeros)."""
    draws = iter([bytes(16) + b"\x01" * 8, b"\x02" * 16 + bytes(8), b"\x03" * 24])
    monkeypatch.setattr(tracecontext.os, "urandom", lambda n: next(draws))
    assert tracecontext.new_traceparents(1) == [b"00-" + b"03" * 16 + b"-" + b"03" * 8 + b"-01"]


def test_new_traceparents_take_trace_ids_then_span_ids_from_the_draw(monkeypatch):
    """Trace ``k``'s id is the draw's bytes ``16k..16k+15``, its span id 8 bytes from ``16 * count + 8k``."""
    draw = bytes(range(1, 121))
    monkeypatch.setattr(tracecontext.os, "urandom", lambda n: draw[:n])
    values = tracecontext.new_traceparents(5)
    assert values == [
        b"00-%s-%s-01" % (draw[16 * k : 16 * k + 16].hex().encode(), draw[80 + 8 * k : 88 + 8 * k].hex().encode())
        for k in range(5)
    ]
