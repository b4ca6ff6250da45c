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
from json.encoder import encode_basestring as _string
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LoggingFile

from twistgate.config.model import ConfigError, ConfigIssue
from twistgate.ops.logtext import iso_time, json_time, milliseconds as _milliseconds, number as _number
from twistgate.ops.metrics import NO_ROUTE
from twistgate.ops.tracing import NewTrace, TraceContext

_log = Logger()


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


class _JsonStrings(dict):
    """
    The JSON text of a value a field repeats line after line (the method),
    with the line's text around it (``,"method":`` before, ``,"path":``
    after): a dict hit instead of a call, an escape and two more pieces to
    join.  Any other value is written as json.dumps writes it, and not kept
    (only str and None are keys, so 1, 1.0 and True never meet).  Cleared
    when full, so many distinct values cost a bounded amount of memory, and
    the values of the moment come back.
    """

    __slots__ = ("before", "after")

    def __init__(self, before: str = "", after: str = "") -> None:
        super().__init__()
        self.before = before
        self.after = after

    def __missing__(self, value: Any) -> str:
        encoded = f"{self.before}{_text(value)}{self.after}"
        if value is None or value.__class__ is str:
            if len(self) >= _STRINGS_KEPT:
                self.clear()
            self[value] = encoded
        return encoded


def _textual(*values: Any) -> bool:
    """Every value is text or None: a key of them names one line text (1, 1.0 and True would meet)."""
    return all(value is None or value.__class__ is str for value in values)


class _Stretches(dict):
    """
    The line's text between two values that change per request, by the
    repeated values it writes (a tuple: one dict hit for several fields,
    e.g. route, status and error).  ``write(*values)`` gives the text and
    whether it may be kept (`_textual`); bounded as `_JsonStrings`.
    """

    __slots__ = ("write",)

    def __init__(self, write: Callable[..., Tuple[str, bool]]) -> None:
        super().__init__()
        self.write = write

    def __missing__(self, values: Tuple[Any, ...]) -> str:
        text, keep = self.write(*values)
        if keep:
            if len(self) >= _STRINGS_KEPT:
                self.clear()
            self[values] = text
        return text


def _after_path(route: Any, status: int, error: Any) -> Tuple[str, bool]:
    return f',"route":{_text(route)},"status":{int.__repr__(status)},"error":{_text(error)},"bytes_in":', _textual(route, error)


def _after_duration(upstream: Any, target: Any) -> Tuple[str, bool]:
    return f',"upstream":{_text(upstream)},"upstream_target":{_text(target)},"upstream_duration_ms":', _textual(upstream, target)


def _after_retries(client_ip: Any, consumer: Any, client_gone: Any, protocol: Any) -> Tuple[str, bool]:
    """(No cache status nor gRPC status: the usual line.  `client_gone` is written by its truth.)"""
    gone = "true" if client_gone else "false"
    return (
        f',"client_ip":{_text(client_ip)},"consumer":{_text(consumer)},"cache":null,"client_gone":{gone},'
        f'"protocol":{_text(protocol)},"grpc_status":null,"trace_id":',
        _textual(client_ip, consumer, protocol),
    )


_STRINGS_KEPT = 4096
_methods = _JsonStrings(',"method":', ',"path":')
_after_paths = _Stretches(_after_path)
_after_durations = _Stretches(_after_duration)
_after_retries_usual = _Stretches(_after_retries)


def json_line(record: Any) -> str:
    """
    ``json.dumps(access_fields(record), separators=(",", ":"), ensure_ascii=False)``
    and a newline, faster: the repeated values come with the text around
    them (`_JsonStrings`, `_Stretches`), so the line is one join of 20 pieces.
    """
    status, bytes_in, bytes_out = record.status, record.bytes_in, record.bytes_out
    if status.__class__ is not int or bytes_in.__class__ is not int or bytes_out.__class__ is not int:
        return _dumped(record)  # (so the counts below are plain ints, formatted as json.dumps does)
    state = record.state
    trace = cache = websocket = None
    if state:
        trace = state.get("trace")
        if "cache" in state:
            cache = state["cache"]
        if "websocket" in state:
            websocket = state["websocket"]
    finished = record.finished
    upstream_head = record.upstream_head_seconds
    retries = record.attempts - 1
    grpc_status = record.grpc_status
    try:
        duration = finished - record.started
        duration_ms = _milliseconds(duration if duration > 0.0 else 0.0)
        upstream_ms = _milliseconds(upstream_head) if upstream_head is not None else "null"
        if trace.__class__ is NewTrace:  # (its id cut from its traceparent here: a property call fewer)
            trace_id = f'"{trace.traceparent[3:35].decode()}"'  # (hex digits the gateway drew: nothing to escape)
        elif trace.__class__ is TraceContext:
            trace_id = _string(trace.trace_id)  # (a trace id that is not text: TypeError, the long way)
        elif trace is None:
            trace_id = "null"
        else:
            trace_id = getattr(trace, "trace_id", None)
            trace_id = _string(trace_id) if trace_id.__class__ is str else _text(trace_id)
        if cache is None and grpc_status is None:
            after_retries = _after_retries_usual[(record.client_ip, record.consumer, record.client_gone, record.protocol)]
        else:
            after_retries = _after_retries_unusual(record, cache, grpc_status)
        return (
            f"{json_time(finished)}{_string(record.request_id)}{_methods[record.method]}{_string(record.path)}"
            f"{_after_paths[(record.route, status, record.error)]}{bytes_in or '0'}"
            f',"bytes_out":{bytes_out},"duration_ms":{duration_ms}{_after_durations[(record.upstream, record.target)]}'
            f'{upstream_ms},"retries":{retries if retries > 0 else "0"}{after_retries}{trace_id}'
            f"{_websocket_fields(websocket) if websocket is not None else ''}}}\n"
        )
    except TypeError:  # a field not of its declared type (a str field that is not text, an unhashable value)
        return _dumped(record)


def _after_retries_unusual(record: Any, cache: Any, grpc_status: Any) -> str:
    """`_after_retries` for a line with a cache status or a gRPC status."""
    gone = "true" if record.client_gone else "false"
    return (
        f',"client_ip":{_text(record.client_ip)},"consumer":{_text(record.consumer)},'
        f'"cache":{_text(str(cache)) if cache is not None else "null"},"client_gone":{gone},'
        f'"protocol":{_text(record.protocol)},"grpc_status":{_text(grpc_status)},"trace_id":'
    )


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
    per request.  To a file of its own, buffered so, records wait in
    `waiting` (None: written at once) and are formatted `BATCH` at a time,
    and at every flush: the file shows nothing before a flush anyway, and
    one loop over many records keeps the formatter's code and caches warm
    where a call per request, between two requests' other work, does not.
    """

    __slots__ = ("stream", "formatter", "flush_each", "waiting")

    def __init__(self, stream: IO[str], formatter: Callable[[Any], str], flush_each: bool, batched: bool) -> None:
        self.stream = stream
        self.formatter = formatter
        self.flush_each = flush_each
        self.waiting: Optional[List[Any]] = [] if batched else None

    def write_waiting(self) -> None:
        """Write the records waiting, as one string (a record whose line cannot be made is logged and left out)."""
        records = self.waiting
        if records:
            self.waiting = []
            lines = []
            for record in records:
                try:
                    lines.append(self.formatter(record))
                except Exception:
                    _log.failure("access log: no line for request {request_id}", request_id=getattr(record, "request_id", None))
            self.stream.write("".join(lines))


#: Records an access log file keeps waiting at most before their lines are made (`_LineWriter.waiting`).
BATCH = 64


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
        self._observer = _LineWriter(stream, formatter, flush_each=not buffered, batched=buffered and stream is self._file)
        if buffered:
            self._flusher = LoopingCall(self.flush)
            self._flusher.clock = self.clock
            self._flusher.start(self.settings.flush_interval, now=False)

    def flush(self) -> None:
        observer = self._observer
        if observer is not None:
            observer.write_waiting()
            observer.stream.flush()

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
        observer.write_waiting()  # (to the old file, as they would have been)
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
        waiting = writer.waiting
        if waiting is not None:
            waiting.append(record)
            if len(waiting) >= BATCH:
                writer.write_waiting()
            return
        stream = writer.stream
        stream.write(writer.formatter(record))
        if writer.flush_each:
            stream.flush()
