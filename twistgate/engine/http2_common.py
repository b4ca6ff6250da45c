"""
What the HTTP/2 server (`http2_server`) and client (`http2_client`) share:
the field rules of RFC 9113 §8.2-8.3, header conversion to and from the
gateway's `Headers`, and the connection plumbing both hops need alike (h2's
configuration, the graceful GOAWAY, sending a queued body within the
flow-control windows, closing the transport).

h2 is configured not to validate inbound fields itself: it would turn every
malformed request into a connection error, where RFC 9113 §8.1.1 asks for a
stream error (RST_STREAM PROTOCOL_ERROR) and leaves the other streams alone.
The header block has been decoded by then, so HPACK state stays in step.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import Settings

from twistgate.headers import Headers, canonical_name

__all__ = [
    "PREFACE",
    "STREAM_GONE",
    "DrainingH2Connection",
    "CONNECTION_SPECIFIC",
    "acknowledge_data",
    "close_transport",
    "code_name",
    "from_h2_fields",
    "goaway_frame",
    "new_connection",
    "open_connection_window",
    "request_problem",
    "response_problem",
    "send_within_window",
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


# -- connection plumbing, the same on both hops --------------------------------

#: What h2 raises for a stream it no longer knows (reset, closed, never opened):
#: the stream is over, so what was to be sent on it is dropped.
STREAM_GONE = (ProtocolError, StreamClosedError, KeyError)

#: Every connection's initial window (RFC 9113 §6.9.2), before it is opened wider.
_DEFAULT_WINDOW = 65535


def new_connection(*, client_side: bool, settings: Dict[int, int]) -> DrainingH2Connection:
    """
    An h2 connection that leaves field validation to this module (see the
    module docstring) and announces `settings`, which are in force at once:
    the peer's excess is refused even before it acknowledges them.
    """
    config = H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_inbound_headers=False,  # request_problem() / response_problem()
        normalize_inbound_headers=False,
        validate_outbound_headers=False,  # to_h2_fields() builds valid blocks
        normalize_outbound_headers=False,
    )
    connection = DrainingH2Connection(config)
    connection.local_settings = Settings(client=client_side, initial_values=settings)
    return connection


def open_connection_window(h2: H2Connection, window: int) -> None:
    """Send the preface and SETTINGS, and open the connection's receive window to `window`."""
    h2.initiate_connection()
    h2.increment_flow_control_window(window - _DEFAULT_WINDOW)


def send_within_window(h2: H2Connection, stream_id: int, queue: List[bytes]) -> int:
    """
    Send the chunks of `queue` (consumed in place, a chunk split where a
    window ends) as far as the stream's and the connection's flow-control
    windows and the peer's frame size allow; the number of bytes sent.
    `STREAM_GONE` errors are the caller's to handle.
    """
    sent = 0
    while queue:
        window = min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size)
        if window <= 0:
            break
        chunk = queue[0]
        if len(chunk) <= window:
            queue.pop(0)
        else:
            queue[0] = chunk[window:]
            chunk = chunk[:window]
        sent += len(chunk)
        h2.send_data(stream_id, chunk)
    return sent


def acknowledge_data(h2: H2Connection, stream_id: int, size: int) -> None:
    """Reopen the windows by `size` consumed bytes of `stream_id` (nothing if h2 forgot the stream)."""
    try:
        h2.acknowledge_received_data(size, stream_id)
    except STREAM_GONE:
        pass


def close_transport(transport: Any) -> None:
    """Close a connection's transport, TLS included."""
    # A TLS transport does not start its shutdown while a producer is registered.
    try:
        transport.unregisterProducer()
    except Exception:
        pass
    transport.loseConnection()


def code_name(code: int) -> str:
    """An RFC 9113 error code's name (``ENHANCE_YOUR_CALM``), or its hex for an unknown one."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"
