"""
Reading WebSocket frames as they pass, without changing them (RFC 6455 §5.2).

The relay forwards bytes as they come; `FrameScanner` reads the same bytes
alongside to learn three things: where frames begin (so the gateway may add
a close frame of its own between two frames), the size of each data message
(for ``max_message_size``), and the code of the close frame a side sends
(for metrics and the access log).  It never judges the frames: reserved
bits, unknown opcodes, bad UTF-8, unmasked client frames are the endpoints'
business, so the gateway behaves exactly as a wire would.

Without a size limit nothing is held back: every byte is forwarded at once.
With one, the few bytes of a frame header split across reads wait until
the header is whole, so an oversized message is refused before any of it
is forwarded.
"""

from __future__ import annotations

import os
import struct
from typing import Optional

__all__ = ["FrameScanner", "close_frame", "close_label"]

_CLOSE = 0x8
_CONTINUATION = 0x0
_CONTROL = 0x8  # opcodes from 8 up are control frames
#: Close codes reported as themselves (RFC 6455 §7.4.1 and the IANA registry); others are folded.
_KNOWN_CODES = frozenset(range(1000, 1016))
NO_STATUS = 1005  # a close frame without a code
ABNORMAL = 1006  # the connection ended without a close frame


def close_label(code: Optional[int]) -> str:
    """A bounded metrics label for a close code: ``1000``..., ``3xxx``, ``4xxx``, ``invalid``, ``none``."""
    if code is None:
        return "none"
    if code in _KNOWN_CODES:
        return str(code)
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return "invalid"


def close_frame(code: int, reason: bytes, *, masked: bool) -> bytes:
    """A whole close frame (a client's is masked, RFC 6455 §5.3)."""
    payload = struct.pack("!H", code) + reason[:123]
    if not masked:
        return bytes((0x80 | _CLOSE, len(payload))) + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | _CLOSE, 0x80 | len(payload))) + key + body


class FrameScanner:
    """
    One direction of a WebSocket connection, read frame by frame.

    :ivar close_code: the code of the first close frame seen (`NO_STATUS`
        when it had none, -1 when its payload was one byte), else None.
    :ivar too_big: a data message went over ``limit``; nothing of it was
        passed on (`feed` returned only what came before its frame).
    """

    __slots__ = ("limit", "_head", "_left", "_message", "_close_bytes", "_close_mask", "_close_need", "close_code", "too_big")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self._head = b""  # bytes of a frame header not whole yet
        self._left = 0  # payload bytes of the current frame still to come
        self._message = 0  # payload bytes of the current data message so far
        self._close_bytes = b""  # the first two payload bytes of a close frame (masked)
        self._close_mask = b""
        self._close_need = 0
        self.close_code: Optional[int] = None
        self.too_big = False

    @property
    def at_boundary(self) -> bool:
        """Between two frames: a frame of the gateway's own may go here."""
        return not self._left and not self._head

    def feed(self, data: bytes) -> bytes:
        """Read `data`; returns the bytes to forward now (all of it, unless a limit holds some back)."""
        if self.too_big:
            return b""  # nothing more of this direction is forwarded
        carried = self._head
        buf = carried + data if carried else data
        self._head = b""
        pos = 0
        end = len(buf)
        while pos < end:
            left = self._left
            if left:
                take = end - pos if end - pos < left else left
                if self._close_need:
                    self._close_payload(buf[pos : pos + min(take, self._close_need)])
                self._left = left - take
                pos += take
                continue
            header = _header(buf, pos)
            if header is None:
                self._head = buf[pos:]  # incomplete: read again with the next bytes
                if self.limit:
                    return buf[:pos]  # held back until the header is whole
                break
            size, fin, opcode, length, mask = header
            if opcode >= _CONTROL:
                if opcode == _CLOSE and self.close_code is None:
                    if length >= 2:
                        self._close_need, self._close_mask, self._close_bytes = 2, mask, b""
                    else:
                        self.close_code = NO_STATUS if length == 0 else -1
            else:
                message = length if opcode != _CONTINUATION else self._message + length
                if self.limit and message > self.limit:
                    self.too_big = True
                    return buf[:pos]
                self._message = 0 if fin else message
            self._left = length
            pos += size
        if self.limit or not carried:
            return buf
        return data  # the carried header bytes were forwarded already

    def _close_payload(self, part: bytes) -> None:
        self._close_bytes += part
        self._close_need -= len(part)
        if not self._close_need:
            raw = self._close_bytes
            mask = self._close_mask
            if mask:
                raw = bytes((raw[0] ^ mask[0], raw[1] ^ mask[1]))
            self.close_code = struct.unpack("!H", raw)[0]


def _header(buf: bytes, pos: int) -> "Optional[tuple]":
    """``(header size, fin, opcode, payload length, mask key)`` of the frame at `pos`, or None if incomplete."""
    avail = len(buf) - pos
    if avail < 2:
        return None
    first = buf[pos]
    second = buf[pos + 1]
    length = second & 0x7F
    size = 2
    if length == 126:
        if avail < 4:
            return None
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        size = 4
    elif length == 127:
        if avail < 10:
            return None
        length = struct.unpack_from("!Q", buf, pos + 2)[0]
        size = 10
    mask = b""
    if second & 0x80:
        if avail < size + 4:
            return None
        mask = buf[pos + size : pos + size + 4]
        size += 4
    return size, bool(first & 0x80), first & 0x0F, length, mask
