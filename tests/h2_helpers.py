"""
A blocking HTTP/2 client on the `h2` library, for tests that run it in a
thread (`deferToThread`) against a gateway on the real reactor.

`H2Client` speaks cleartext prior knowledge (h2c) or TLS with ALPN ``h2``;
`request` sends one request and waits for its whole answer (interim
responses, head, body, trailers), while `open`/`send`/`wait` drive several
streams at once.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Dict, List, Optional, Sequence, Tuple

import h2.config
import h2.connection
import h2.events
import h2.settings

Fields = List[Tuple[bytes, bytes]]


class Answer:
    """What came back on one stream."""

    def __init__(self) -> None:
        self.interim: List[Fields] = []
        self.head: Optional[Fields] = None
        self._body = bytearray()
        self.trailers: Optional[Fields] = None
        self.ended = False
        self.reset: Optional[int] = None

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    @property
    def status(self) -> int:
        assert self.head is not None, "no response head"
        return int(dict(self.head)[b":status"])

    def header(self, name: bytes) -> Optional[bytes]:
        for key, value in self.head or ():
            if key == name:
                return value
        return None

    def trailer(self, name: bytes) -> Optional[bytes]:
        for key, value in self.trailers or ():
            if key == name:
                return value
        return None


class H2Client:
    def __init__(
        self,
        port: int,
        *,
        tls: Optional[ssl.SSLContext] = None,
        server_name: str = "localhost",
        timeout: float = 10.0,
        settings: Optional[Dict[int, int]] = None,
        auto_ack: bool = True,
    ) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_name)
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.auto_ack = auto_ack
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.answers: Dict[int, Answer] = {}
        self.goaway: Optional[h2.events.ConnectionTerminated] = None
        self.closed = False
        self.remote_settings_seen = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, method: str, path: str, headers: Sequence[Tuple[str, str]] = (), *, end: bool = True, authority: str = "localhost") -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"http"), (b":authority", authority.encode()), (b":path", path.encode())]
        fields += [(k.lower().encode(), v.encode()) for k, v in headers]
        self.conn.send_headers(sid, fields, end_stream=end)
        self.answers[sid] = Answer()
        self.flush()
        return sid

    def send(self, sid: int, data: bytes, *, end: bool = False) -> None:
        """Send `data`, waiting for window as needed."""
        view = memoryview(data)
        while view:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.read_some()
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(sid, bytes(chunk))
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def send_trailers(self, sid: int, trailers: Sequence[Tuple[str, str]]) -> None:
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in trailers], end_stream=True)
        self.flush()

    def reset(self, sid: int, code: int = 8) -> None:
        self.conn.reset_stream(sid, code)
        self.flush()

    def read_some(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            raise ConnectionError("the server closed the connection")
        for event in self.conn.receive_data(data):
            self._event(event)
        self.flush()

    def _event(self, event: Any) -> None:
        answer = self.answers.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived):
            answer.head = event.headers
        elif isinstance(event, h2.events.InformationalResponseReceived):
            answer.interim.append(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            answer._body += event.data
            if self.auto_ack and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            answer.trailers = event.headers
        elif isinstance(event, h2.events.StreamEnded):
            answer.ended = True
        elif isinstance(event, h2.events.StreamReset):
            answer.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True

    def wait(self, sid: int) -> Answer:
        answer = self.answers[sid]
        while not answer.ended and answer.reset is None:
            self.read_some()
        return answer

    def request(
        self, method: str, path: str, headers: Sequence[Tuple[str, str]] = (), body: Optional[bytes] = None, trailers: Sequence[Tuple[str, str]] = ()
    ) -> Answer:
        sid = self.open(method, path, headers, end=body is None and not trailers)
        if body is not None:
            self.send(sid, body, end=not trailers)
        if trailers:
            self.send_trailers(sid, trailers)
        return self.wait(sid)

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.flush()
        except Exception:
            pass
        self.sock.close()

    def __enter__(self) -> "H2Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
