"""
A strict decoder for ``Transfer-Encoding: chunked`` request bodies (RFC 9112 §7.1).

The engine decodes chunked bodies itself rather than through llhttp because
it must see each declared chunk size before the chunk's bytes arrive: a
chunk larger than what is left of the body limit is refused with 413 at once,
without reading it.  Every line must end in CRLF; sizes are 1-16 hex digits
(more is an overflow: 400); extensions are checked and ignored; trailer
fields are checked, bounded, and dropped.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from twistgate.errors import BadRequest, HeadersTooLarge, PayloadTooLarge

__all__ = ["ChunkedDecoder"]

_SIZE, _DATA, _DATA_END, _TRAILER = range(4)
_MAX_SIZE_LINE = 4096

# chunk-size [ chunk-ext ]: 1*16HEXDIG *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_SIZE_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*)\Z"
).match
_FIELD_LINE = re.compile(_TOKEN + rb":[ \t]*[\t\x20-\x7e\x80-\xff]*\Z").match


class ChunkedDecoder:
    """Decodes one chunked body; `feed` hands the data on and says where the body ended."""

    __slots__ = ("_state", "_line", "_remaining", "_room", "_trailer_room")

    def __init__(self, max_body: int, max_trailer: int) -> None:
        self._state = _SIZE
        self._line = b""
        self._remaining = 0
        self._room = max_body  # body bytes still allowed
        self._trailer_room = max_trailer

    def feed(self, data: bytes, deliver: Callable[[bytes], None]) -> Optional[bytes]:
        """
        Decode ``data``, passing chunk data to ``deliver``.  Returns ``None``
        while the body goes on, else the bytes after its end (maybe ``b""``).
        Raises `BadRequest`, `PayloadTooLarge` or `HeadersTooLarge`.
        """
        pos = 0
        size = len(data)
        while pos < size:
            if self._state == _DATA:
                take = min(self._remaining, size - pos)
                deliver(data if take == size else data[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
                continue
            end = data.find(b"\n", pos)
            if end < 0:
                self._check_partial(data, pos)
                self._line += data[pos:]
                return None
            line = self._line + data[pos : end + 1] if self._line else data[pos : end + 1]
            self._line = b""
            pos = end + 1
            if len(line) < 2 or line[-2] != 13 or 13 in line[:-2]:
                raise BadRequest("Chunked body lines must end with CRLF.")
            if self._line_done(line[:-2]):
                return data[pos:]
        return None

    def _check_partial(self, data: bytes, pos: int) -> None:
        """An unfinished line: only the new bytes are checked (no quadratic rescans)."""
        size = len(self._line) + len(data) - pos
        if self._state == _TRAILER:
            if size > self._trailer_room:
                raise HeadersTooLarge("The request trailers are too large.")
        elif size > _MAX_SIZE_LINE:
            raise BadRequest("Chunk size line too long.")
        cr = data.find(b"\r", pos, len(data) - 1)
        if cr >= 0 or (self._line.endswith(b"\r") and pos < len(data)):
            raise BadRequest("Chunked body lines must end with CRLF.")

    def _line_done(self, line: bytes) -> bool:
        """Handle one complete line (without CRLF); True when the body is over."""
        state = self._state
        if state == _SIZE:
            match = _SIZE_LINE(line)
            if match is None:
                if re.match(rb"[0-9A-Fa-f]{17}", line):
                    raise BadRequest("Chunk size overflow.")
                raise BadRequest("Invalid chunk size.")
            chunk = int(match.group(1), 16)
            if chunk > self._room:
                raise PayloadTooLarge()
            self._room -= chunk
            if chunk:
                self._remaining = chunk
                self._state = _DATA
            else:
                self._state = _TRAILER
            return False
        if state == _DATA_END:
            if line:
                raise BadRequest("Chunk data longer than its size.")
            self._state = _SIZE
            return False
        # trailer section: field lines up to an empty line
        if not line:
            return True
        self._trailer_room -= len(line) + 2
        if self._trailer_room < 0:
            raise HeadersTooLarge("The request trailers are too large.")
        if _FIELD_LINE(line) is None:
            raise BadRequest("Invalid trailer field.")
        return False
