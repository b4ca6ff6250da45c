"""
The message machine both parsers share: a head parsed whole once its blank
line is in (a few ``find``/``split`` calls and precompiled patterns, no loop
per byte, so PyPy's JIT has little to trace), then the body by
Content-Length, chunks (and trailers) or until close, with llhttp's rules
for which one (``llhttp__after_headers_complete``), its callbacks and its
refusals.  An incomplete head is checked line by line as it arrives (and a
framing field still arriving as far as llhttp has, `framing_fields`), so
what llhttp refuses at once is refused at once here too.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from twistgate.engine.pyparse.grammar import (
    FIELD_PREFIX,
    NOT_IN_FIELDS,
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    check_chunk_start,
    check_fields,
    chunk_size,
    field_error,
)
from twistgate.engine.pyparse.framing_fields import KNOWN_NAMES, FramingFields, name_kind

__all__ = ["MessageParser", "callback_of"]

# states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _CLOSED = range(8)


def _ignore(*args: Any) -> None:
    pass


def _after_blanks(data: bytes, at: int, end: int) -> int:
    """Where the spaces and tabs from ``at`` end (at most ``end``)."""
    while at < end and data[at] in (32, 9):
        at += 1
    return at


def callback_of(protocol: Any, name: str) -> Callable[..., Any]:
    return getattr(protocol, name, None) or _ignore


class MessageParser(FramingFields):
    """What requests and responses share (see the module docstring); subclasses parse the start line."""

    _request = True

    def __init__(self, protocol: Any) -> None:
        self._on_message_begin = callback_of(protocol, "on_message_begin")
        self._on_header = callback_of(protocol, "on_header")
        self._on_headers_complete = callback_of(protocol, "on_headers_complete")
        self._on_body = callback_of(protocol, "on_body")
        self._on_message_complete = callback_of(protocol, "on_message_complete")
        self._state = _HEAD
        self._buffer = b""
        self._scanned = 0  # how far the buffered partial head is known to be valid
        self._failure: Optional[HttpParserError] = None
        self._major = self._minor = 0
        self._status = 0
        self._method = b""
        self._preface = False
        self._begun = False
        self._reset_message()

    def _reset_message(self) -> None:
        """Called as a message begins: what ``should_keep_alive`` and friends answer lasts until the next one."""
        self._noted = 0  # leading field lines whose framing was noted already (`_note`)
        self._length = -1  # Content-Length, -1 when absent
        self._left = 0
        self._te = False  # a Transfer-Encoding field was seen
        self._chunked = False
        self._close = self._keep = self._conn_upgrade = self._has_upgrade = False
        self._upgrade = False

    # -- httptools' interface --------------------------------------------------

    def get_http_version(self) -> str:
        return "%d.%d" % (self._major, self._minor)

    def should_keep_alive(self) -> bool:
        if self._major > 0 and self._minor > 0:
            if self._close:
                return False
        elif not self._keep:
            return False
        return not self._needs_eof()

    def should_upgrade(self) -> bool:
        return self._upgrade

    def feed_data(self, data: Any) -> None:
        failure = self._failure
        if failure is not None:
            raise type(failure)(*failure.args)  # as llhttp: once refused, always refused
        if type(data) is not bytes:
            data = bytes(data)
        buffered = self._buffer
        if buffered:
            self._buffer = b""
            data = buffered + data
        try:
            self._run(data, len(buffered))
        except HttpParserError as error:
            self._failure = error
            raise

    # -- the machine -------------------------------------------------------------

    def _run(self, data: bytes, base: int) -> None:
        end = len(data)
        pos = 0
        while pos < end:
            state = self._state
            if state == _HEAD:
                pos = self._head(data, pos, end, base)
            elif state == _LENGTH:
                left = self._left
                if end - pos < left:
                    self._left = left - (end - pos)
                    self._body(data[pos:] if pos else data)
                    return
                self._body(data[pos : pos + left])
                pos += left
                self._complete()
            elif state == _CHUNK_SIZE:
                pos = self._chunk_size(data, pos, end)
            elif state == _CHUNK_DATA:
                left = self._left
                if end - pos < left:
                    self._left = left - (end - pos)
                    self._body(data[pos:] if pos else data)
                    return
                self._body(data[pos : pos + left])
                pos += left
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if end - pos < 2:
                    if data[pos] != 13:
                        raise HttpParserError("Expected LF after chunk data")
                    self._buffer = data[pos:]
                    return
                if data[pos] != 13 or data[pos + 1] != 10:
                    raise HttpParserError("Expected LF after chunk data")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                pos = self._trailers(data, pos, end)
            elif state == _UNTIL_CLOSE:
                self._body(data[pos:] if pos else data)
                return
            else:  # _CLOSED
                while pos < end and data[pos] in (13, 10):
                    pos += 1
                if pos < end:
                    raise HttpParserError("Data after `Connection: close`")

    def _head(self, data: bytes, pos: int, end: int, base: int) -> int:
        if not self._begun:
            while data[pos] in (13, 10):
                pos += 1
                if pos == end:
                    return pos
            self._begun = True
            self._scanned = 0
            self._reset_message()
            try:
                self._on_message_begin()
            except BaseException:
                raise HttpParserCallbackError("`on_message_begin` callback error")
        line_end, fields_at = self._start_line_end(data, pos, end)
        if line_end < 0:
            self._check_start(data[pos:end])
            self._buffer = data[pos:] if pos else data
            return end
        if data.startswith(b"\r\n", fields_at):
            blank = fields_at
        else:
            stop = data.find(b"\r\n\r\n", max(fields_at, pos + self._scanned - 2))
            if stop < 0:
                self._check_partial(data, pos, line_end, fields_at, end)
                self._buffer = data[pos:] if pos else data
                return end
            blank = stop + 2
        self._start_line(data[pos:line_end], fields_at - line_end)
        if self._preface:
            return self._await_preface(data, pos, fields_at, end)
        headers = self._fields(data, fields_at, blank) if blank > fields_at else []
        self._emit_head(headers)
        pos = blank + 2
        self._after_head()
        if self._upgrade:
            self._complete()
            self._state = _HEAD
            raise HttpParserUpgrade(pos - base)
        return pos

    def _start_line_end(self, data: bytes, pos: int, end: int) -> Tuple[int, int]:
        """Where the start line ends and the fields begin, or ``(-1, -1)`` while the line is incomplete."""
        line_end = data.find(b"\r\n", pos, end)
        if self._request:
            bare = data.find(b"\n", pos, end if line_end < 0 else line_end)
            if bare >= 0:
                return bare, bare + 1  # llhttp ends an HTTP/0.9 line (no version) at a bare LF too
        if line_end < 0:
            return -1, -1
        return line_end, line_end + 2

    def _check_partial(self, data: bytes, pos: int, line_end: int, fields_at: int, end: int) -> None:
        """Refuse what a head cannot become as soon as its lines are in, as llhttp would."""
        if self._scanned == 0:
            self._start_line(data[pos:line_end], fields_at - line_end)
            if self._preface:
                self._await_preface(data, pos, fields_at, end)
                return
            self._scanned = fields_at - pos
        self._scanned = self._check_lines(data, pos + self._scanned, fields_at, end) - pos

    def _check_lines(self, data: bytes, scanned: int, fields_at: int, end: int) -> int:
        """Check the field lines arrived since ``scanned`` (and the start of the next); where the line still arriving starts."""
        last = data.rfind(b"\r\n", scanned, end)
        tail = scanned
        if last >= scanned:
            check_fields(data, scanned, last + 2)
            tail = last + 2
        if FIELD_PREFIX.fullmatch(data, tail, end) is None:
            raise field_error(data[tail:end] + b"\x00")
        if tail == end and tail > fields_at:  # llhttp judges a value once the byte after its CRLF shows no fold follows
            before = data.rfind(b"\r\n", fields_at, tail - 2)
            tail = before + 2 if before >= 0 else fields_at  # so that line is still arriving
        if last >= scanned and tail > fields_at:
            self._note(data[fields_at : tail - 2])
        self._check_arriving(data[tail:end])
        return tail

    def _fields(self, data: bytes, start: int, stop: int) -> List[Tuple[bytes, bytes]]:
        """
        ``[(name, value)]`` of the field lines in ``data[start:stop]`` (each
        with its CRLF), checked, with what they say about framing noted (if
        not yet), once all are known valid.  ``find`` cuts each line; a name
        seen before is known valid by one lookup (`KNOWN_NAMES`), one search
        finds a byte no value may hold, and a count of CRs and LFs one inside
        a line.  (A pattern over every line, `FIELDS`, cost PyPy ~15 entries
        into its regex engine's loops a head; it now only words the error.)
        """
        headers = []
        framing = None
        known = KNOWN_NAMES
        find, pos, lines = data.find, start, 0
        while pos < stop:
            eol = find(b"\r\n", pos, stop)
            colon = find(b":", pos, eol)
            name, value_at = data[pos:colon], colon + 1
            kind = known.get(name)
            if kind is None:
                kind = name_kind(name) if colon >= 0 else -1
                if kind < 0:
                    check_fields(data, start, stop)  # raises: a name that is not a token
            if value_at < eol and data[value_at] in (32, 9):  # SP, HTAB: llhttp skips them
                value_at = _after_blanks(data, value_at + 1, eol)  # (no loop here: one blank is the rule)
            value, pos = data[value_at:eol], eol + 2
            headers.append((name, value))
            if kind > 0:
                framing = [] if framing is None else framing
                framing.append((lines, kind, value))
            lines += 1
        if NOT_IN_FIELDS.search(data, start, stop) is not None or not (
            data.count(b"\n", start, stop) == lines == data.count(b"\r", start, stop)
        ):
            check_fields(data, start, stop)
        if framing is not None:
            noted = self._noted
            for line, kind, value in framing:
                if line >= noted:
                    self._special(kind, value)
        self._noted = 0
        return headers

    def _emit_fields(self, headers: List[Tuple[bytes, bytes]]) -> None:
        on_header = self._on_header
        try:
            for name, value in headers:
                on_header(name, value)
        except BaseException:
            raise HttpParserCallbackError("`on_header_field` callback error")

    def _emit_head(self, headers: List[Tuple[bytes, bytes]]) -> None:
        self._emit_fields(headers)
        self._upgrade = self._head_upgrades()
        try:
            self._on_headers_complete()
        except BaseException:
            raise HttpParserCallbackError("User callback error")

    def _after_head(self) -> None:
        """Where the body ends (llhttp's ``llhttp__after_headers_complete``)."""
        if self._upgrade:
            return
        if self._skips_body():
            self._complete()
        elif self._chunked:
            self._state = _CHUNK_SIZE
        elif self._te:
            if self._request:
                raise HttpParserError("Request has invalid `Transfer-Encoding`")
            self._state = _UNTIL_CLOSE
        elif self._length > 0:
            self._left = self._length
            self._state = _LENGTH
        elif self._length < 0 and self._needs_eof():
            self._state = _UNTIL_CLOSE
        else:
            self._complete()

    def _chunk_size(self, data: bytes, pos: int, end: int) -> int:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            check_chunk_start(data[pos:end])
            self._buffer = data[pos:] if pos else data
            return end
        size = chunk_size(data[pos:line_end])
        if size:
            self._left = size
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILERS
        return line_end + 2

    def _trailers(self, data: bytes, pos: int, end: int) -> int:
        if data.startswith(b"\r\n", pos):
            self._complete()
            return pos + 2
        stop = data.find(b"\r\n\r\n", pos)
        if stop < 0:
            self._check_lines(data, pos, pos, end)
            self._buffer = data[pos:] if pos else data
            return end
        self._emit_fields(self._fields(data, pos, stop + 2))
        self._complete()
        return stop + 4

    def _body(self, chunk: bytes) -> None:
        if chunk:
            try:
                self._on_body(chunk)
            except BaseException:
                raise HttpParserCallbackError("`on_body` callback error")

    def _complete(self) -> None:
        keep = self.should_keep_alive()
        upgrade = self._upgrade
        self._begun = False
        self._state = _HEAD if keep or upgrade else _CLOSED
        try:
            self._on_message_complete()
        except BaseException:
            raise HttpParserCallbackError("`on_message_complete` callback error")

    # -- what requests and responses answer differently (see the subclasses) -----------

    def _start_line(self, line: bytes, eol: int) -> None:
        """Parse the start line; ``eol`` is the length of its line end (1: a bare LF)."""
        raise NotImplementedError

    _check_start = _head_upgrades = _skips_body = _needs_eof = _await_preface = _start_line
