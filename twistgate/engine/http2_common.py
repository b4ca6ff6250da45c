"""
What the HTTP/2 server (`http2_server`) and client (`http2_client`) share:
the field rules of RFC 9113 §8.2-8.3, header conversion to and from the
gateway's `Headers`, and the guards against floods.

h2 is configured not to validate inbound fields itself: it would turn every
malformed request into a connection error, where RFC 9113 §8.1.1 asks for a
stream error (RST_STREAM PROTOCOL_ERROR) and leaves the other streams alone.
The header block has been decoded by then, so HPACK state stays in step.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from h2.connection import ConnectionState, H2Connection

from twistgate.headers import Headers, canonical_name

__all__ = [
    "PREFACE",
    "DrainingH2Connection",
    "CONNECTION_SPECIFIC",
    "FrameScanner",
    "TokenBucket",
    "from_h2_fields",
    "request_problem",
    "to_h2_fields",
    "trailer_problem",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: RFC 9113 §8.2.2: fields that belong to an HTTP/1.1 connection, never sent on HTTP/2.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})

# RFC 9110 §5.6.2 token, lowercase only on HTTP/2 (§8.2.1).
_lower_token = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z").match
# A field value must not hold NUL, CR or LF, nor start or end with whitespace (§8.2.1).
_bad_value = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z").search

Field = Tuple[bytes, bytes]


class DrainingH2Connection(H2Connection):
    """
    h2's connection, except that a graceful GOAWAY (NO_ERROR) received does
    not close it: h2 moves to its CLOSED state on any GOAWAY and then refuses
    every later frame (the peer's PING, DATA of streams still in flight),
    where RFC 9113 §6.8 lets the streams below the last stream id finish.
    The gateway sends its own graceful GOAWAY itself (`goaway_frame`) for
    the same reason, and refuses new streams after it.
    """

    def _receive_goaway_frame(self, frame: Any) -> Any:
        before = self.state_machine.state  # CLIENT_OPEN or SERVER_OPEN (h2 has no plain OPEN)
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == 0 and before != ConnectionState.CLOSED:
            self.state_machine.state = before
        return frames, events


def goaway_frame(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    """A serialized GOAWAY frame (written by the engines, not through h2: see `DrainingH2Connection`)."""
    from hyperframe.frame import GoAwayFrame

    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = code
    frame.additional_data = debug
    return frame.serialize()


def _field_problem(name: bytes, value: bytes) -> Optional[str]:
    if not _lower_token(name):
        return f"invalid field name {name[:40]!r}"
    if value and _bad_value(value):
        return f"invalid value of {name.decode('latin-1')!r}"
    if name in CONNECTION_SPECIFIC:
        return f"connection-specific field {name.decode('latin-1')!r}"
    if name == b"te" and value.lower() != b"trailers":
        return "TE other than 'trailers'"
    return None


def request_problem(fields: Sequence[Field]) -> Optional[str]:
    """
    Why a request header block is malformed (RFC 9113 §8.1.1, §8.2, §8.3.1),
    or None: pseudo-fields first, each once, only request ones; :method,
    :scheme and a non-empty :path (not for CONNECT); lowercase names; no
    connection-specific fields.
    """
    seen = set()
    regular = False
    for name, value in fields:
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name.decode('latin-1')!r} after a regular field"
            if name not in REQUEST_PSEUDO:
                return f"pseudo-header {name.decode('latin-1')!r} is not allowed in a request"
            if name in seen:
                return f"duplicate {name.decode('latin-1')!r}"
            seen.add(name)
            if name == b":path" and not value:
                return "empty :path"
            continue
        regular = True
        problem = _field_problem(name, value)
        if problem is not None:
            return problem
    if b":method" not in seen:
        return "missing :method"
    method = next(v for n, v in fields if n == b":method")
    if method == b"CONNECT":
        if b":protocol" in seen:
            return "extended CONNECT is not supported"
        if b":scheme" in seen or b":path" in seen or b":authority" not in seen:
            return "CONNECT takes :authority only"
        return None
    if b":protocol" in seen:
        return ":protocol without CONNECT"
    if b":scheme" not in seen:
        return "missing :scheme"
    if b":path" not in seen:
        return "missing :path"
    return None


def trailer_problem(fields: Sequence[Field]) -> Optional[str]:
    """Why a trailer section is malformed (no pseudo-fields, §8.1), or None."""
    for name, value in fields:
        if name[:1] == b":":
            return f"pseudo-header {name.decode('latin-1')!r} in trailers"
        problem = _field_problem(name, value)
        if problem is not None:
            return problem
    return None


def response_problem(fields: Sequence[Field]) -> Optional[str]:
    """Why a response header block from an upstream is malformed (§8.3.2), or None."""
    status = False
    regular = False
    for name, value in fields:
        if name[:1] == b":":
            if regular or name != b":status" or status:
                return f"unexpected pseudo-header {name.decode('latin-1')!r}"
            if len(value) != 3 or not value.isdigit():
                return f"invalid :status {value[:10]!r}"
            status = True
            continue
        regular = True
        problem = _field_problem(name, value)
        if problem is not None:
            return problem
    return None if status else "missing :status"


def from_h2_fields(fields: Iterable[Field]) -> Headers:
    """
    Regular fields (pseudo-fields skipped) as the gateway's `Headers`;
    cookie crumbs are joined back into one field (RFC 9113 §8.2.3).
    """
    headers = Headers()
    raw = headers.raw
    cookies: Optional[List[bytes]] = None
    for name, value in fields:
        if name[:1] == b":":
            continue
        if name == b"cookie":
            if cookies is None:
                cookies = []
            cookies.append(value)
            continue
        key = canonical_name(name)
        values = raw.get(key)
        if values is None:
            raw[key] = [value]
        else:
            values.append(value)
    if cookies is not None:
        raw[b"Cookie"] = [b"; ".join(cookies)]
    return headers


#: Names never sent on HTTP/2 whatever the other hop said (the gateway strips
#: most hop-by-hop fields already; these would make h2 refuse the block).
_NEVER_SENT = CONNECTION_SPECIFIC | {b"host", b"te", b"trailer", b"http2-settings"}


def to_h2_fields(pseudo: List[Field], headers: Optional[Headers], *, keep_te: bool = False) -> List[Field]:
    """
    `pseudo` followed by `headers` with lowercase names; connection-specific
    fields (and Host: :authority carries it) are left out.
    """
    fields = pseudo
    if headers is None:
        return fields
    for name, values in headers.raw.items():
        lower = name.lower()
        if lower in _NEVER_SENT and not (keep_te and lower == b"te"):
            continue
        for value in values:
            fields.append((lower, value))
    return fields


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
