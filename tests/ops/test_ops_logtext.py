"""The short ways of the access line's times and milliseconds give the definition's text, at the edges too."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from twistgate.ops.accesslog import json_line
from twistgate.ops.logtext import milliseconds
from twistgate.record import ExchangeRecord


def definition(seconds):
    return json.dumps(round(seconds * 1000.0, 3) + 0.0)


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, 10**12), st.integers(-3, 3))
@example(1734, 0)
@example(999_999_999_999, 0)
@example(999_999_999_999, 3)
def test_milliseconds_next_to_a_tie_of_thousandths(thousandths, steps):
    """Durations whose thousandths of a millisecond end in .5, and the doubles next to them: where a short way could round the other way."""
    seconds = (thousandths + 0.5) / 1e6
    for _ in range(abs(steps)):
        seconds = math.nextafter(seconds, math.inf if steps > 0 else -math.inf)
    assert milliseconds(seconds) == definition(seconds)


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 10**15).map(lambda n: n / 1e6))
def test_milliseconds_of_whole_microseconds(seconds):
    """Durations as a clock gives them (microseconds), up to beyond the short way's bound."""
    assert milliseconds(seconds) == definition(seconds)


def record(finished):
    return ExchangeRecord(
        request_id="r", method="GET", path="/", route="r", status=200, error=None, started=finished, finished=finished,
        upstream=None, target=None, attempts=1, upstream_head_seconds=None, bytes_in=0, bytes_out=0,
        client_ip="203.0.113.9", consumer=None, client_gone=False, state={}, protocol="HTTP/1.1",
    )


@settings(deadline=None)
@given(st.lists(st.one_of(
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    st.integers(0, 4 * 10**9).flatmap(lambda s: st.sampled_from([s, s + 0.9995, s + 0.9999995, s + 0.99999949, s + 1e-7])),
), min_size=1, max_size=8))
def test_the_line_time_is_what_datetime_writes_in_any_order_of_times(times):
    """The date kept for the second last written is used only for times in that second (the next one, an earlier one, a rounding up into the next)."""
    for finished in times:
        expected = datetime.fromtimestamp(finished, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert json.loads(json_line(record(finished)))["time"] == expected


def test_the_remembered_values_of_every_field_are_bounded(monkeypatch):
    """Each field's remembered JSON text is cleared when full: many distinct values cost bounded memory, the line stays exact."""
    from twistgate.ops import accesslog

    monkeypatch.setattr(accesslog, "_STRINGS_KEPT", 4)
    caches = [value for value in vars(accesslog).values() if isinstance(value, (accesslog._JsonStrings, accesslog._Stretches))]
    for n in range(20):
        one = ExchangeRecord(
            request_id=f"r{n}", method=f"M{n}", path="/", route=f"r{n}", status=100 + n, error=f"e{n}", started=0.0,
            finished=0.0, upstream=f"u{n}", target=f"t{n}", attempts=1, upstream_head_seconds=None, bytes_in=0,
            bytes_out=0, client_ip=f"c{n}", consumer=f"k{n}", client_gone=False, state={"cache": f"x{n}"} if n % 2 else {},
            protocol=f"p{n}", grpc_status=f"g{n}" if n % 3 else None,
        )
        assert json_line(one) == json.dumps(accesslog.access_fields(one), separators=(",", ":"), ensure_ascii=False) + "\n"
    assert len(caches) >= 4
    assert all(len(cache) <= 4 for cache in caches)
