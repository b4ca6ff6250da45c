"""The access log: one JSON (or text) line per request, with the documented fields."""

from __future__ import annotations

import json

import pytest
from twisted.web.resource import Resource

from tests.ops.helpers import access_record, yaml
from twistgate.config import ConfigError, load_text
from twistgate.testing import GatewayHarness

CONFIG = yaml(
    """
    listeners: [{name: p, endpoint: "tcp:0"}]
    upstreams: {app: {targets: [{url: "http://app:80"}]}}
    routes:
      - {name: r, path: "/r/*", upstream: app}
    """
)


class Upstream(Resource):
    isLeaf = True

    def render(self, request):
        return b"0123456789"


def gateway(path, fmt="json"):
    gw = GatewayHarness(load_text(CONFIG + f"access_log: {{path: {path}, format: {fmt}}}\n"), Upstream())
    gw.generation.start()
    return gw


def test_json_line_per_request_with_the_fields(tmp_path):
    log = tmp_path / "access.log"
    gw = gateway(log)
    gw.clock.advance(1700000000.25)
    gw.content(gw.request("GET", "http://gw/r/a?token=secret", headers={"X-Request-ID": "req-1", "traceparent": "00-12345678901234567890123456789012-1234567890123456-01"}))
    gw.content(gw.request("GET", "http://gw/missing"))
    gw.generation.stop()
    first, second = [json.loads(line) for line in log.read_text().splitlines()]
    assert first == {
        "time": "2023-11-14T22:13:20.250Z", "request_id": "req-1", "method": "GET", "path": "/r/a", "route": "r",
        "status": 200, "error": None, "bytes_in": 0, "bytes_out": 10, "duration_ms": 0.0, "upstream": "app",
        "upstream_target": "http://app", "upstream_duration_ms": 0.0, "retries": 0, "client_ip": "127.0.0.1",
        "consumer": None, "cache": None, "client_gone": False, "trace_id": "12345678901234567890123456789012",
        "protocol": "HTTP/1.1", "grpc_status": None,
    }
    assert (second["route"], second["status"], second["error"], second["upstream"]) == (None, 404, "route_not_found", None)
    assert "secret" not in log.read_text()


def test_text_format(tmp_path):
    log = tmp_path / "access.log"
    gw = gateway(log, "text")
    gw.content(gw.request("GET", "http://gw/r/a", headers={"X-Request-ID": "req-2"}))
    gw.generation.stop()
    line = log.read_text()
    assert line.startswith('127.0.0.1 - - [1970-01-01T00:00:00.000Z] "GET /r/a" 200 10 0.0ms route=r target=http://app')
    assert line.endswith("id=req-2\n")


def test_stdout(capsys):
    gw = gateway("-")
    gw.content(gw.request("GET", "http://gw/r/a"))
    assert json.loads(capsys.readouterr().out)["path"] == "/r/a"


def test_missing_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        gateway(tmp_path / "nope" / "access.log")
    assert "access_log.path: directory" in str(error.value)


def test_unknown_format_is_refused_with_its_line():
    with pytest.raises(ConfigError) as error:
        load_text(CONFIG + "access_log: {format: xml}\n", "gw.yaml")
    assert "gw.yaml:6: access_log.format: unknown value 'xml'" in str(error.value)


def test_lines_are_flushed_on_the_interval_not_per_request(tmp_path):
    """One write per flush_interval (like NGINX's flush=), not a syscall per request; 0 writes through."""
    log = tmp_path / "access.log"
    gw = GatewayHarness(load_text(CONFIG + f"access_log: {{path: {log}, flush_interval: 2s}}\n"), Upstream())
    gw.generation.start()
    gw.content(gw.request("GET", "http://gw/r/a"))
    assert log.read_text() == ""  # buffered
    gw.clock.advance(2)
    assert len(log.read_text().splitlines()) == 1
    gw.content(gw.request("GET", "http://gw/r/b"))
    gw.generation.stop()  # stopping flushes what is left
    assert len(log.read_text().splitlines()) == 2

    through = tmp_path / "through.log"
    gw = GatewayHarness(load_text(CONFIG + f"access_log: {{path: {through}, flush_interval: 0s}}\n"), Upstream())
    gw.generation.start()
    gw.content(gw.request("GET", "http://gw/r/a"))
    assert len(through.read_text().splitlines()) == 1
    gw.generation.stop()


def test_iso_time_matches_datetime_formatting():
    """The once-a-second cache gives exactly what datetime would (rounding included)."""
    from datetime import datetime, timezone

    from hypothesis import given
    from hypothesis import strategies as st

    from twistgate.ops.accesslog import iso_time

    @given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
    def check(seconds):
        expected = datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
        assert iso_time(seconds) == expected.replace("+00:00", "Z")

    check()


def test_json_line_is_what_json_dumps_writes():
    """The hand-made line equals json.dumps of the documented fields, escapes and nulls included."""
    import math

    from twistgate.ops.accesslog import access_fields, json_line
    from twistgate.ops.tracing import TraceContext

    def record(**changes):
        fields = dict(
            path="/caf\u00e9/\"quoted\"\\back\tslash", attempts=2, consumer="al\u0000ice",
            state={"cache": "HIT", "trace": TraceContext("ab" * 16, "cd" * 8, None, 1)},
        )
        fields.update(changes)
        return access_record(**fields)

    records = [
        record(),
        record(route=None, upstream=None, target=None, attempts=0, upstream_head_seconds=None, state={}, status=0,
               error="route_not_found", client_gone=True, consumer=None, grpc_status=14),
        record(finished=1700000000.0, started=1700000001.0, upstream_head_seconds=-0.5, state=None),
        record(upstream_head_seconds=math.inf, bytes_out=10**12, method="PURGE", path="/\u2603\U0001f600"),
        record(status=101, state={"websocket": {"close_code": 1000, "closed_by": "client"}}),
        record(status=101, state={"websocket": {"close_code": None, "closed_by": "reset"}}),
    ]
    for one in records:
        expected = json.dumps(access_fields(one), separators=(",", ":"), ensure_ascii=False) + "\n"
        assert json_line(one) == expected


def test_reopen_after_logrotate_renamed_the_file(tmp_path):
    """SIGUSR1's work (issue 14): what was buffered goes to the renamed file, new lines to a new file at the path."""
    log = tmp_path / "access.log"
    gw = GatewayHarness(load_text(CONFIG + f"access_log: {{path: {log}, flush_interval: 5s}}\n"), Upstream())
    gw.generation.start()
    gw.content(gw.request("GET", "http://gw/r/before"))
    log.rename(tmp_path / "access.log.1")
    gw.generation.services.access_log.reopen()
    gw.content(gw.request("GET", "http://gw/r/after"))
    gw.generation.stop()
    assert [json.loads(line)["path"] for line in (tmp_path / "access.log.1").read_text().splitlines()] == ["/r/before"]
    assert [json.loads(line)["path"] for line in log.read_text().splitlines()] == ["/r/after"]


def test_reopen_keeps_the_old_file_when_the_path_cannot_be_opened(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    log = directory / "access.log"
    gw = GatewayHarness(load_text(CONFIG + f"access_log: {{path: {log}, flush_interval: 0s}}\n"), Upstream())
    gw.generation.start()
    log.rename(tmp_path / "moved.log")
    directory.rmdir()
    gw.generation.services.access_log.reopen()  # logged; the old file stays in use
    gw.content(gw.request("GET", "http://gw/r/still"))
    gw.generation.stop()
    assert json.loads((tmp_path / "moved.log").read_text())["path"] == "/r/still"


record = access_record


def test_json_line_stays_exact_past_its_string_cache_and_for_odd_field_types(monkeypatch):
    """The remembered JSON strings are cleared when full (not grown); a field of another type falls back to json.dumps."""
    from twistgate.ops import accesslog
    from twistgate.ops.accesslog import access_fields, json_line

    monkeypatch.setattr(accesslog, "_STRINGS_KEPT", 8)
    caches = (accesslog._methods, accesslog._after_paths, accesslog._after_durations, accesslog._after_retries_usual)
    for kept in caches:
        kept.clear()  # what earlier tests left (in any order) is not this test's growth

    records = [record(client_ip=f"198.51.100.{i}", consumer=f"c\"{i}") for i in range(30)]
    records += [record(consumer=["a", "list"]), record(consumer=7), record(route=True)]
    records += [record(status=True), record(bytes_in=1.5), record(bytes_out=float("nan")), record(status=None)]
    for one in records:
        assert json_line(one) == json.dumps(access_fields(one), separators=(",", ":"), ensure_ascii=False) + "\n"
    for kept in caches:
        assert len(kept) <= 8


def test_json_line_times_and_trace_id_of_every_type_as_json_dumps_writes_them():
    """The milliseconds and the trace id, formatted inline for floats and text, equal json.dumps for anything else."""
    import math
    from decimal import Decimal
    from types import SimpleNamespace

    from twistgate.ops.accesslog import access_fields, json_line

    records = [
        record(upstream_head_seconds=math.nan),
        record(upstream_head_seconds=-math.inf),
        record(upstream_head_seconds=2),  # an int: milliseconds as a float, as _ms gives
        record(started=1700000000, finished=1700000003),
        record(finished=math.inf),
        record(upstream_head_seconds=Decimal("0.5")),
        record(state={"trace": SimpleNamespace(trace_id=None)}),
        record(state={"trace": SimpleNamespace(trace_id=12)}),
        record(state={"trace": SimpleNamespace(trace_id="a\"b\u00e9")}),
        record(state={"trace": object()}),
    ]
    for one in records:
        try:
            expected = json.dumps(access_fields(one), separators=(",", ":"), ensure_ascii=False) + "\n"
        except (TypeError, ValueError, OverflowError) as error:
            with pytest.raises(type(error)):
                json_line(one)
            continue
        assert json_line(one) == expected


def test_milliseconds_are_written_as_json_dumps_writes_the_rounded_number():
    """The one-conversion milliseconds equal json.dumps(round(seconds * 1000, 3)) for every float, ties and edges included."""
    import math

    from hypothesis import example, given, settings
    from hypothesis import strategies as st

    from twistgate.ops.accesslog import _milliseconds

    @settings(max_examples=3000)
    @given(st.one_of(st.floats(), st.floats(min_value=0, max_value=1e6), st.integers(0, 10**9).map(lambda n: n / 2e6)))
    @example(0.0)
    @example(-0.0)
    @example(-1e-7)
    @example(0.0000005)  # a half millisecond-thousandth: the tie rule
    @example(0.0015)
    @example(999999.9999995)  # just below the bound, rounds up to it
    @example(1e6)
    @example(1e-300)
    @example(math.inf)
    def check(seconds):
        # + 0.0: a negative zero is written 0.0 on both interpreters (PyPy's round drops its sign, CPython's keeps it)
        assert _milliseconds(seconds) == json.dumps(round(seconds * 1000.0, 3) + 0.0)

    check()


def test_a_files_lines_are_made_a_batch_at_a_time_and_in_order(tmp_path, monkeypatch):
    """
    A buffered file's records wait: their lines are made BATCH at a time, and
    at a flush (and a reopen, above), in the order the requests finished; a
    record whose line cannot be made is logged and left out, not the batch.
    """
    from twisted.internet.task import Clock
    from twisted.logger import globalLogPublisher

    from twistgate.ops import accesslog
    from twistgate.ops.settings import AccessLogSettings

    made = []

    def line(one):
        if one.request_id == "bad":
            raise ValueError("no line")
        made.append(one.request_id)
        return one.request_id + "\n"

    monkeypatch.setattr(accesslog, "json_line", line)
    log = tmp_path / "access.log"
    access = accesslog.AccessLog(AccessLogSettings(path=str(log), flush_interval=5.0), clock=Clock())
    access.start()
    first = [f"r{i}" for i in range(accesslog.BATCH)]
    for request_id in first[:-1]:
        access.observe(record(request_id=request_id))
    assert made == []
    access.observe(record(request_id=first[-1]))
    assert made == first
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        for request_id in ("late", "bad", "last"):
            access.observe(record(request_id=request_id))
        access.observe(record(request_id="unlogged", logged=False))
        assert made == first
        access.flush()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert log.read_text().splitlines() == first + ["late", "last"]
    assert [event["request_id"] for event in events if "log_failure" in event] == ["bad"]
    access.stop()
