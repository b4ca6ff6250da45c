"""
Worker logs reach the supervisor's log.

A worker writes one line per event on its standard error, ``LEVEL NAMESPACE
message`` (tracebacks follow on lines of their own); the supervisor reads
the pipe and re-emits each line through its own logger with the worker's
number, at the same level, so twistd's ``--logfile``, syslog or journald get
every process's events in one place, each timestamped once.  A worker's
standard output (the access log with ``path: "-"``) is copied to the
supervisor's standard output as it is.
"""

from __future__ import annotations

from typing import IO, Any, Callable, Dict, Optional

from twisted.logger import FileLogObserver, LogLevel, Logger, formatEvent, globalLogBeginner

LEVELS: Dict[str, LogLevel] = {level.name: level for level in LogLevel.iterconstants()}


def format_line(event: Dict[str, Any]) -> Optional[str]:
    level = event.get("log_level", LogLevel.info)
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}"
    lines = text.rstrip("\n").split("\n")
    head = f"{level.name} {event.get('log_namespace', '-')} {lines[0]}"
    rest = [f"{level.name} + {line}" for line in lines[1:]]
    return "\n".join([head] + rest) + "\n"


def begin_worker_logging(stream: IO[str]) -> None:
    globalLogBeginner.beginLoggingTo([FileLogObserver(stream, format_line)], redirectStandardIO=False)


class LineRelay:
    """Splits a pipe's bytes into lines and hands each to ``emit``."""

    def __init__(self, emit: Callable[[str], None], limit: int = 1 << 16) -> None:
        self.emit = emit
        self.limit = limit
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            line, sep, rest = self.buffer.partition(b"\n")
            if not sep:
                if len(self.buffer) > self.limit:  # a line without end: cut it
                    self.emit(self.buffer.decode("utf-8", "replace"))
                    self.buffer = b""
                return
            self.buffer = rest
            self.emit(line.decode("utf-8", "replace"))

    def flush(self) -> None:
        if self.buffer:
            self.emit(self.buffer.decode("utf-8", "replace"))
            self.buffer = b""


def relay_log_line(log: Logger, index: int, line: str) -> None:
    """Re-emit one worker log line at its level."""
    name, _, rest = line.partition(" ")
    level = LEVELS.get(name)
    if level is None:
        level, rest = LogLevel.info, line
    else:
        namespace, _, message = rest.partition(" ")
        rest = message if namespace == "+" else f"[{namespace}] {message}"
    log.emit(level, "worker {index}: {line}", index=index, line=rest)
