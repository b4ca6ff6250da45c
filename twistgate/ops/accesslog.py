"""
The access log: one line per finished request, JSON by default, written to
standard output or a file by a writer of its own, never through twistd's
log, so that log stays readable and the access log can be parsed line by
line.  The query string is never logged (it may carry tokens), nor any
header.

The line is formatted straight from the record (`json_line`), the same
bytes ``json.dumps(access_fields(record), separators=(",", ":"),
ensure_ascii=False)`` would give: building the dict, a JSON encoder and a
`twisted.logger` event per request cost ~15 us.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from json.encoder import encode_basestring as _string
from typing import IO, Any, Callable, Dict, Optional

from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LoggingFile

from twistgate.config.model import ConfigError, ConfigIssue
from twistgate.ops.metrics import NO_ROUTE

_log = Logger()


_second_prefix: list = [None, ""]  # [whole second, "YYYY-MM-DDTHH:MM:SS"]


#: ".000Z" to ".999Z": the end of a time stamp by its milliseconds.
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


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
    if _second_prefix[0] != whole:
        _second_prefix[0] = whole
        _second_prefix[1] = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return _second_prefix[1] + _MILLIS[micros // 1000]


def _ms(seconds: Optional[float]) -> Optional[float]:
    return round(seconds * 1000.0, 3) if seconds is not None else None


def access_fields(record: Any) -> Dict[str, Any]:
    """The fields of one access line (see docs/operations.md)."""
    state = record.state or {}
    trace = state.get("trace")
    cache = state.get("cache")
    fields = {
        "time": iso_time(record.finished),
        "request_id": record.request_id,
        "method": record.method,
        "path": record.path,
        "route": record.route,
        "status": record.status,
        "error": record.error,
        "bytes_in": record.bytes_in,
        "bytes_out": record.bytes_out,
        "duration_ms": _ms(max(record.duration, 0.0)),
        "upstream": record.upstream,
        "upstream_target": record.target,
        "upstream_duration_ms": _ms(record.upstream_head_seconds),
        "retries": max(record.attempts - 1, 0),
        "client_ip": record.client_ip,
        "consumer": record.consumer,
        "cache": str(cache) if cache is not None else None,
        "client_gone": record.client_gone,
        "protocol": record.protocol,
        "grpc_status": record.grpc_status,
        "trace_id": getattr(trace, "trace_id", None),
    }
    websocket = state.get("websocket")
    if websocket is not None:  # a WebSocket: the line is written when the connection ends
        fields["websocket_close_code"] = websocket["close_code"]
        fields["websocket_closed_by"] = websocket["closed_by"]
    return fields


def _text(value: Any) -> str:
    """A JSON string (or null) for a field that is text or None; anything else as json.dumps writes it."""
    if value is None:
        return "null"
    if value.__class__ is str:
        return _string(value)
    return json.dumps(value, ensure_ascii=False)


#: Below this many milliseconds (and from 0), ``"%.3f"`` has at most 13
#: significant digits: the double it names prints back as those digits.
_MS_PRINTED_EXACTLY = 1e9


def _milliseconds(seconds: float) -> str:
    """
    ``_number(round(seconds * 1000.0, 3))``, three times faster: ``round``
    with digits and ``repr`` each run a decimal conversion (~0.9 us
    together); ``"%.3f"`` rounds to the same digits in one (the same
    correctly rounded conversion), and with at most 15 significant digits
    the shortest repr of the rounded double is those digits without
    trailing zeros.  Negative, huge or non-finite values take the long way;
    anything but a number raises TypeError (`json_line` falls back).  A
    negative zero is written ``0.0`` (``+ 0.0``): PyPy's ``round`` drops
    its sign where CPython's keeps it, and the line is the same on both.
    """
    ms = seconds * 1000.0 + 0.0
    if 0.0 <= ms < _MS_PRINTED_EXACTLY:
        text = ("%.3f" % ms).rstrip("0")
        return text + "0" if text[-1] == "." else text
    ms = round(ms, 3) + 0.0
    return float.__repr__(ms) if ms - ms == 0.0 else _number(ms)


def _number(value: Any) -> str:
    """A JSON number (or null), as json.dumps writes ints and floats."""
    if value is None:
        return "null"
    kind = value.__class__
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0.0:  # finite (json.dumps spells NaN and Infinity its own way)
        return float.__repr__(value)
    return json.dumps(value)


class _JsonStrings(dict):
    """
    The JSON text of the strings every line repeats (method, route, upstream,
    target, client, consumer, protocol; None as null): a dict hit instead of
    a call and an escape.  Any other value is written as json.dumps writes it,
    and not kept (only str and None are keys, so 1, 1.0 and True never meet).
    Cleared when full, so many distinct values cost a bounded amount of
    memory, and the values of the moment come back.
    """

    def __missing__(self, value: Any) -> str:
        encoded = _text(value)
        if value is None or value.__class__ is str:
            if len(self) >= _STRINGS_KEPT:
                self.clear()
            self[value] = encoded
        return encoded


_STRINGS_KEPT = 4096
_strings = _JsonStrings()


def json_line(record: Any) -> str:
    """``json.dumps(access_fields(record), separators=(",", ":"), ensure_ascii=False)`` and a newline, faster."""
    status, bytes_in, bytes_out = record.status, record.bytes_in, record.bytes_out
    if status.__class__ is not int or bytes_in.__class__ is not int or bytes_out.__class__ is not int:
        return _dumped(record)  # (so the counts below are plain ints, formatted as json.dumps does)
    state = record.state
    trace = state.get("trace") if state else None
    cache = state.get("cache") if state else None
    duration = record.finished - record.started
    upstream_head = record.upstream_head_seconds
    retries = record.attempts - 1
    known = _strings
    websocket = state.get("websocket") if state else None
    try:
        duration_ms = _milliseconds(duration if duration > 0.0 else 0.0)
        upstream_ms = _milliseconds(upstream_head) if upstream_head is not None else "null"
        # The trace id as _text writes it, without its call for text.
        trace_id = getattr(trace, "trace_id", None)
        trace_id = _string(trace_id) if trace_id.__class__ is str else _text(trace_id)
        return (
            f'{{"time":"{iso_time(record.finished)}","request_id":{_string(record.request_id)},'
            f'"method":{known[record.method]},"path":{_string(record.path)},"route":{known[record.route]},'
            f'"status":{status},"error":{known[record.error]},"bytes_in":{bytes_in},'
            f'"bytes_out":{bytes_out},"duration_ms":{duration_ms},'
            f'"upstream":{known[record.upstream]},"upstream_target":{known[record.target]},'
            f'"upstream_duration_ms":{upstream_ms},"retries":{retries if retries > 0 else 0},'
            f'"client_ip":{known[record.client_ip]},"consumer":{known[record.consumer]},'
            f'"cache":{known[str(cache)] if cache is not None else "null"},'
            f'"client_gone":{"true" if record.client_gone else "false"},"protocol":{known[record.protocol]},'
            f'"grpc_status":{known[record.grpc_status]},"trace_id":{trace_id}'
            f'{_websocket_fields(websocket) if websocket is not None else ""}}}\n'
        )
    except TypeError:  # a field not of its declared type (a str field that is not text, an unhashable value)
        return _dumped(record)


def _dumped(record: Any) -> str:
    """The line by its definition: what `json_line` gives when a field is not of its declared type."""
    return json.dumps(access_fields(record), separators=(",", ":"), ensure_ascii=False) + "\n"


def _websocket_fields(websocket: Optional[Dict[str, Any]]) -> str:
    """A WebSocket's line (written when the connection ends) adds how it closed."""
    if websocket is None:
        return ""
    return (
        f',"websocket_close_code":{_number(websocket["close_code"])},'
        f'"websocket_closed_by":{_text(websocket["closed_by"])}'
    )


def text_line(record: Any) -> str:
    """The ``format: text`` line."""
    f = access_fields(record)
    return (
        f'{f["client_ip"] or "-"} - {f["consumer"] or "-"} [{f["time"]}] "{f["method"]} {f["path"]}" '
        f'{f["status"]} {f["bytes_out"]} {f["duration_ms"]}ms route={f["route"] or NO_ROUTE or "-"} '
        f'target={f["upstream_target"] or "-"} retries={f["retries"]} cache={f["cache"] or "-"} '
        f'error={f["error"] or "-"} proto={f["protocol"]} '
        + (f'grpc_status={f["grpc_status"]} ' if f["grpc_status"] is not None else "")
        + (f'ws_close={f["websocket_close_code"]} ws_closed_by={f["websocket_closed_by"]} ' if "websocket_close_code" in f else "")
        + f'id={f["request_id"]}\n'
    )


def standard_output() -> IO[str]:
    """
    The process's standard output for access lines.  Under twistd,
    ``sys.stdout`` is a `LoggingFile` that turns each write into a log event
    (``[stdout#info]``-prefixed in twistd's log): access lines must go to
    the real stream, as bare JSON lines.
    """
    stream = sys.stdout
    if isinstance(stream, LoggingFile) and sys.__stdout__ is not None:
        return sys.__stdout__
    return stream


class _LineWriter:
    """
    Where and how each record is written as a line (`AccessLog.observe`
    writes).  It does not flush per line: the access log flushes on a timer
    (`flush_interval`), so a busy gateway makes one write a second, not one
    per request.
    """

    __slots__ = ("stream", "formatter", "flush_each")

    def __init__(self, stream: IO[str], formatter: Callable[[Any], str], flush_each: bool) -> None:
        self.stream = stream
        self.formatter = formatter
        self.flush_each = flush_each


class AccessLog:
    """A per-generation service: the observer that writes access lines."""

    def __init__(self, settings: Any, *, stream: Optional[IO[str]] = None, clock: Any = None) -> None:
        self.settings = settings
        self.clock = clock
        self._given = stream
        self._file: Optional[IO[str]] = None
        self._observer: Optional[_LineWriter] = None
        self._flusher: Optional[LoopingCall] = None
        if stream is not None:
            self._attach(stream)

    @classmethod
    def check(cls, settings: Any) -> None:
        """Refuse a file path whose directory does not exist (at build, not at the first request)."""
        if settings.path == "-":
            return
        directory = os.path.dirname(os.path.abspath(settings.path))
        if not os.path.isdir(directory):
            raise ConfigError(
                [ConfigIssue(location=settings.location, message=f"access_log.path: directory {directory!r} does not exist")]
            )

    def _attach(self, stream: IO[str]) -> None:
        formatter = text_line if self.settings.format == "text" else json_line
        buffered = self.settings.flush_interval > 0 and self.clock is not None
        self._observer = _LineWriter(stream, formatter, flush_each=not buffered)
        if buffered:
            self._flusher = LoopingCall(self.flush)
            self._flusher.clock = self.clock
            self._flusher.start(self.settings.flush_interval, now=False)

    def flush(self) -> None:
        if self._observer is not None:
            self._observer.stream.flush()

    def start(self) -> None:
        if self._observer is not None:
            return
        if self.settings.path == "-":
            self._attach(standard_output())
            return
        self._file = self._open()
        self._attach(self._file)

    def _open(self) -> IO[str]:
        return open(self.settings.path, "a", encoding="utf-8", buffering=1 << 16)

    def reopen(self) -> None:
        """
        Write out what is buffered, close the file and open the configured
        path again (logrotate renamed the old file: SIGUSR1).  Standard
        output is left as it is.  If the path cannot be opened now, the
        old file is kept and the failure logged.
        """
        observer = self._observer
        if self._file is None or observer is None:
            return
        try:
            new = self._open()
        except OSError as error:
            _log.error("access log {path}: cannot reopen ({error}); still writing to the old file", path=self.settings.path, error=error)
            return
        old, self._file = self._file, new
        old.flush()
        observer.stream = new
        old.close()
        _log.info("access log {path} reopened", path=self.settings.path)

    def stop(self) -> None:
        if self._flusher is not None:
            if self._flusher.running:
                self._flusher.stop()
            self._flusher = None
        if self._observer is not None:
            self.flush()
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def observe(self, record: Any) -> None:
        writer = self._observer
        if writer is None or not record.logged:
            return  # not started (twistgate check) or stopped; or a route with `access_log: false`
        stream = writer.stream
        stream.write(writer.formatter(record))
        if writer.flush_each:
            stream.flush()
