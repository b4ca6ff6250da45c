"""
Raw HTTP/2 frames over a blocking socket, for the conformance suite
(`tests/integration/test_http2_conformance.py`).

`RawConn` sends exactly the bytes a case wants (valid frames through
hyperframe, invalid ones byte by byte) and reads the server's frames back
one at a time; the `verify_*` helpers are the verdicts of h2spec's
verifier, made strict: a connection error must be a GOAWAY carrying one of
the expected codes (h2spec also accepts a bare close), a stream error a
RST_STREAM or GOAWAY with one of them.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, List, Optional, Sequence, Tuple

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xB

TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}


class Failed(AssertionError):
    pass


class Closed:
    """The server closed the connection."""

    def __repr__(self) -> str:
        return "<connection closed>"


class Timeout:
    def __repr__(self) -> str:
        return "<timeout>"


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """A frame exactly as given: any length, any type, any flags."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


class RawConn:
    def __init__(self, port: int, authority: str, timeout: float = 3.0, *, tls: bool = False) -> None:
        """:param tls: TLS with ALPN ``h2`` (certificates not checked), else cleartext prior knowledge."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
            if sock.selected_alpn_protocol() != "h2":
                raise Failed(f"ALPN chose {sock.selected_alpn_protocol()!r}")
        self.sock = sock
        self.tls = tls
        self.authority = authority
        self.encoder = Encoder()
        self.buffer = b""
        self.closed = False
        self.server_settings: Optional[SettingsFrame] = None

    # -- sending ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def write(self, frame: Frame) -> None:
        self.send(frame.serialize())

    def common_headers(self, method: str = "GET", path: str = "/") -> List[Tuple[str, str]]:
        return [(":method", method), (":scheme", "http"), (":path", path), (":authority", self.authority)]

    def encode(self, headers: Sequence[Tuple[str, str]]) -> bytes:
        return self.encoder.encode(list(headers))

    def headers(
        self,
        stream_id: int,
        block: Optional[bytes] = None,
        *,
        end_stream: bool = True,
        end_headers: bool = True,
        padding: int = 0,
        priority: Optional[Tuple[int, int, bool]] = None,
    ) -> None:
        frame = HeadersFrame(stream_id)
        frame.data = block if block is not None else self.encode(self.common_headers())
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        if padding:
            frame.flags.add("PADDED")
            frame.pad_length = padding
        if priority is not None:
            frame.flags.add("PRIORITY")
            frame.depends_on, frame.stream_weight, frame.exclusive = priority
        self.write(frame)

    def continuation(self, stream_id: int, block: bytes, *, end_headers: bool = True) -> None:
        frame = ContinuationFrame(stream_id)
        frame.data = block
        if end_headers:
            frame.flags.add("END_HEADERS")
        self.write(frame)

    def data(self, stream_id: int, payload: bytes, *, end_stream: bool = True, padding: int = 0) -> None:
        frame = DataFrame(stream_id)
        frame.data = payload
        if end_stream:
            frame.flags.add("END_STREAM")
        if padding:
            frame.flags.add("PADDED")
            frame.pad_length = padding
        self.write(frame)

    def settings(self, values: Optional[dict] = None, *, ack: bool = False) -> None:
        frame = SettingsFrame(0)
        if ack:
            frame.flags.add("ACK")
        else:
            frame.settings = dict(values or {})
        self.write(frame)

    def ping(self, payload: bytes = b"h2spec\x00\x00", *, ack: bool = False) -> None:
        frame = PingFrame(0)
        frame.opaque_data = payload
        if ack:
            frame.flags.add("ACK")
        self.write(frame)

    def priority(self, stream_id: int, depends_on: int = 0, weight: int = 15, exclusive: bool = False) -> None:
        frame = PriorityFrame(stream_id)
        frame.depends_on, frame.stream_weight, frame.exclusive = depends_on, weight, exclusive
        self.write(frame)

    def rst_stream(self, stream_id: int, code: int = CANCEL) -> None:
        frame = RstStreamFrame(stream_id)
        frame.error_code = code
        self.write(frame)

    def window_update(self, stream_id: int, increment: int) -> None:
        self.send(raw_frame(8, 0, stream_id, struct.pack(">I", increment)))

    def goaway(self, last_stream_id: int = 0, code: int = NO_ERROR) -> None:
        frame = GoAwayFrame(0)
        frame.last_stream_id, frame.error_code = last_stream_id, code
        self.write(frame)

    # -- receiving -----------------------------------------------------------------

    def _fill(self, need: int) -> bool:
        while len(self.buffer) < need:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                return False
            self.buffer += chunk
        return True

    def next_event(self) -> Any:
        """The next frame from the server, `Closed()`, or `Timeout()`."""
        try:
            if not self._fill(9):
                return Closed()
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if not self._fill(9 + length):
                return Closed()
            frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
            self.buffer = self.buffer[9 + length :]
            return frame
        except socket.timeout:
            return Timeout()

    def handshake(self, settings: Optional[dict] = None) -> None:
        """Preface and SETTINGS both ways, each acknowledged (as h2spec's Handshake)."""
        self.send(PREFACE)
        self.settings(settings or {})
        got_settings = got_ack = False
        while not (got_settings and got_ack):
            event = self.next_event()
            if not isinstance(event, Frame):
                raise Failed(f"handshake: {event!r}")
            if isinstance(event, SettingsFrame):
                if "ACK" in event.flags:
                    got_ack = True
                else:
                    got_settings = True
                    self.server_settings = event
                    self.settings(ack=True)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def describe(event: Any) -> str:
    if isinstance(event, GoAwayFrame):
        return f"GOAWAY(code={event.error_code:#x}, last={event.last_stream_id})"
    if isinstance(event, RstStreamFrame):
        return f"RST_STREAM(stream={event.stream_id}, code={event.error_code:#x})"
    if isinstance(event, Frame):
        return f"{type(event).__name__}(stream={event.stream_id}, flags={sorted(event.flags)}, len={event.body_len})"
    return repr(event)


def _codes(codes: Sequence[int]) -> str:
    return " or ".join(f"{code:#x}" for code in codes)


def verify_connection_error(conn: RawConn, *codes: int) -> None:
    """A GOAWAY with one of `codes` (then the connection closes)."""
    seen = []
    while True:
        event = conn.next_event()
        seen.append(describe(event))
        if isinstance(event, GoAwayFrame):
            if event.error_code in codes:
                return
            raise Failed(f"expected GOAWAY {_codes(codes)}, got {seen}")
        if isinstance(event, (Closed, Timeout)):
            raise Failed(f"expected GOAWAY {_codes(codes)}, got {seen}")


def verify_stream_error(conn: RawConn, *codes: int) -> None:
    """A RST_STREAM or GOAWAY with one of `codes`."""
    seen = []
    while True:
        event = conn.next_event()
        seen.append(describe(event))
        if isinstance(event, (GoAwayFrame, RstStreamFrame)):
            if event.error_code in codes:
                return
            raise Failed(f"expected RST_STREAM/GOAWAY {_codes(codes)}, got {seen}")
        if isinstance(event, (Closed, Timeout)):
            raise Failed(f"expected RST_STREAM/GOAWAY {_codes(codes)}, got {seen}")


def verify_connection_close(conn: RawConn) -> None:
    """The server closes the connection (a GOAWAY may come first)."""
    seen = []
    while True:
        event = conn.next_event()
        seen.append(describe(event))
        if isinstance(event, Closed):
            return
        if isinstance(event, Timeout):
            raise Failed(f"expected the connection to close, got {seen}")


def wait_for(conn: RawConn, kind: type, predicate: Any = None) -> Frame:
    seen = []
    while True:
        event = conn.next_event()
        seen.append(describe(event))
        if isinstance(event, kind) and (predicate is None or predicate(event)):
            return event
        if isinstance(event, (Closed, Timeout)) or isinstance(event, GoAwayFrame):
            raise Failed(f"expected {kind.__name__}, got {seen}")


def verify_headers_frame(conn: RawConn, stream_id: int) -> None:
    wait_for(conn, HeadersFrame, lambda f: f.stream_id == stream_id)


def verify_stream_close(conn: RawConn, stream_id: Optional[int] = None) -> None:
    """A DATA or HEADERS frame with END_STREAM (on `stream_id`, when given)."""
    seen = []
    while True:
        event = conn.next_event()
        seen.append(describe(event))
        if isinstance(event, (DataFrame, HeadersFrame)) and "END_STREAM" in event.flags:
            if stream_id is None or event.stream_id == stream_id:
                return
        if isinstance(event, (Closed, Timeout, GoAwayFrame, RstStreamFrame)):
            raise Failed(f"expected the stream to end, got {seen}")


def verify_ping_ack(conn: RawConn, payload: bytes) -> None:
    frame = wait_for(conn, PingFrame, lambda f: "ACK" in f.flags)
    if frame.opaque_data != payload:
        raise Failed(f"PING ACK with {frame.opaque_data!r}, expected {payload!r}")


def verify_alive(conn: RawConn) -> None:
    """The connection still works: a PING is answered, and nothing else came before it that says otherwise."""
    payload = b"alive!!!"
    conn.ping(payload)
    seen = []
    while True:
        event = conn.next_event()
        seen.append(describe(event))
        if isinstance(event, PingFrame) and "ACK" in event.flags and event.opaque_data == payload:
            return
        if isinstance(event, (Closed, Timeout, GoAwayFrame)):
            raise Failed(f"expected the connection to live on, got {seen}")
        if isinstance(event, PingFrame) and "ACK" in event.flags:
            raise Failed(f"a PING ACK was sent for a PING with ACK: {seen}")
