"""
The HTTP/2 server's guards against floods that cost it work without
carrying requests (h2 bounds none of them by itself): the rapid-reset
pattern (CVE-2023-44487), counted with a `TokenBucket` per connection, and
the frames `FrameScanner` reads before h2 parses them: CONTINUATION floods
(CVE-2024-27316), PING, SETTINGS, PRIORITY and empty frames.  Each ends the
connection with GOAWAY ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

from typing import Optional, Tuple

from twistgate.engine.http2_common import PREFACE

__all__ = ["FrameScanner", "TokenBucket"]


class TokenBucket:
    """
    ``burst`` tokens, refilled at ``rate`` per second on the injected clock;
    `take` says whether a token was left.  The floods it guards against are
    counted per connection.
    """

    __slots__ = ("clock", "rate", "burst", "tokens", "stamp")

    def __init__(self, clock: object, rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = clock.seconds()  # type: ignore[attr-defined]

    def take(self, cost: float = 1.0) -> bool:
        now = self.clock.seconds()  # type: ignore[attr-defined]
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < cost:
            self.tokens = tokens
            return False
        self.tokens = tokens - cost
        return True


# Frame types (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4
FRAME_SIZE_ERROR, ENHANCE_YOUR_CALM = 0x6, 0xB


class FrameScanner:
    """
    Reads only the 9-byte frame headers of what a client sends, before h2
    parses it, to stop floods h2 does not bound by itself:

    * a header block (HEADERS + CONTINUATION...) larger than
      ``max_block`` bytes or longer than ``max_continuations`` frames
      (CVE-2024-27316, the CONTINUATION flood);
    * frames that cost the server work or output but carry no request
      (PING, SETTINGS, PRIORITY, empty DATA and CONTINUATION, unknown
      extension frames) beyond a token bucket.

    It also answers one malformed frame h2 misnames: a SETTINGS ACK with a
    payload is a FRAME_SIZE_ERROR (RFC 9113 §6.5), not a PROTOCOL_ERROR.

    `feed` returns None, or ``(error code, reason)`` for the GOAWAY that
    must end the connection (ENHANCE_YOUR_CALM for floods).
    """

    __slots__ = ("_skip", "_head", "_block", "_continuations", "max_block", "max_continuations", "control")

    def __init__(self, max_block: int, max_continuations: int, control: TokenBucket) -> None:
        self._skip = len(PREFACE)  # the preface is h2's to check
        self._head = b""
        self._block = -1  # bytes of the header block under way; -1: none
        self._continuations = 0
        self.max_block = max_block
        self.max_continuations = max_continuations
        self.control = control

    def feed(self, data: bytes) -> Optional[Tuple[int, str]]:
        view = memoryview(data)
        offset = 0
        size = len(view)
        while offset < size:
            if self._skip:
                step = min(self._skip, size - offset)
                self._skip -= step
                offset += step
                continue
            need = 9 - len(self._head)
            chunk = bytes(view[offset : offset + need])
            offset += len(chunk)
            self._head += chunk
            if len(self._head) < 9:
                return None
            head, self._head = self._head, b""
            length = int.from_bytes(head[0:3], "big")
            kind = head[3]
            flags = head[4]
            self._skip = length
            if kind == SETTINGS and flags & _ACK and length:
                return FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"
            problem = self._frame(kind, flags, length)
            if problem is not None:
                return ENHANCE_YOUR_CALM, problem
        return None

    def _frame(self, kind: int, flags: int, length: int) -> Optional[str]:
        if kind == HEADERS:
            if flags & _END_HEADERS:
                self._block = -1
            else:
                self._block = length
                self._continuations = 0
                if length > self.max_block:
                    return "header block too large"
            return None
        if kind == CONTINUATION:
            if self._block < 0:
                return None  # h2 answers a stray CONTINUATION with PROTOCOL_ERROR
            self._block += length
            self._continuations += 1
            if flags & _END_HEADERS:
                self._block = -1
            elif self._block > self.max_block or self._continuations > self.max_continuations:
                return "CONTINUATION flood"
            if length == 0 and not self.control.take():
                return "empty CONTINUATION flood"
            return None
        if kind == DATA:
            if length == 0 and not flags & _END_STREAM and not self.control.take():
                return "empty DATA flood"
            return None
        if kind in (PING, SETTINGS):
            if not flags & _ACK and not self.control.take():
                return "PING/SETTINGS flood"
            return None
        if kind == PRIORITY or kind > CONTINUATION:
            # WINDOW_UPDATE is left out: a client reading a large body sends many.
            if not self.control.take(0.5):
                return "control frame flood"
        return None
