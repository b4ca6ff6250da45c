"""
The HTTP/2 engine with real clients over real sockets: routes and policies
as on HTTP/1.1, trailers both ways and 103 Early Hints through an HTTP/2
upstream, flow control both ways (a client that does not read holds the
upstream, an upstream that does not read holds the client's upload), limits answered on one stream only, and the defences against rapid reset
and CONTINUATION floods.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import h2.config
import h2.connection
import h2.events
import pytest_twisted
from prometheus_client import generate_latest
from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from tests.h2_frames import CANCEL, ENHANCE_YOUR_CALM, RawConn, verify_connection_error
from tests.h2_helpers import H2Client
from tests.integration.conftest import RecordingUpstream, http_request


class H2Upstream(protocol.Protocol):
    """
    A small HTTP/2 server on h2: records each request (head, body, trailers)
    and answers with a 103, then ``x-answer`` headers, a body and trailers.
    """

    def __init__(self, seen: List[Dict[str, Any]]) -> None:
        self.seen = seen
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.requests: Dict[int, Dict[str, Any]] = {}

    def connectionMade(self) -> None:
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())

    def dataReceived(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = {"headers": dict(event.headers), "body": b"", "trailers": None}
            elif isinstance(event, h2.events.DataReceived):
                self.requests[event.stream_id]["body"] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                self.requests[event.stream_id]["trailers"] = dict(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self.answer(event.stream_id)
        self.transport.write(self.conn.data_to_send())

    def answer(self, sid: int) -> None:
        request = self.requests.pop(sid)
        self.seen.append(request)
        self.conn.send_headers(sid, [(b":status", b"103"), (b"link", b"</style.css>; rel=preload; as=style")])
        self.conn.send_headers(sid, [(b":status", b"200"), (b"x-answer", b"yes"), (b"content-type", b"text/plain")])
        self.conn.send_data(sid, b"body:" + request["body"])
        self.conn.send_headers(sid, [(b"x-checksum", b"abc123"), (b"x-count", b"1")], end_stream=True)


class H2UpstreamFactory(protocol.Factory):
    def __init__(self) -> None:
        self.seen: List[Dict[str, Any]] = []

    def buildProtocol(self, addr: Any) -> H2Upstream:
        return H2Upstream(self.seen)


H2C_UPSTREAM = """
listeners:
  - {name: public, endpoint: "tcp:0", h2c: true}
upstreams:
  app: {protocol: h2c, targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: all, path: "/*", upstream: app}
"""


@pytest_twisted.inlineCallbacks
def test_trailers_and_early_hints_pass_both_ways(servers):
    """Request trailers reach an HTTP/2 upstream; its 103, headers, body and trailers reach the client in order."""
    upstream = H2UpstreamFactory()
    port, _ = servers.gateway_listener(H2C_UPSTREAM, up=servers.listen(upstream))

    def call() -> Any:
        with H2Client(port) as client:
            return client.request("POST", "/upload", [("content-type", "text/plain")], body=b"hello", trailers=[("x-digest", "d1")])

    answer = yield deferToThread(call)
    assert answer.status == 200
    assert answer.interim and dict(answer.interim[0])[b":status"] == b"103"
    assert dict(answer.interim[0])[b"link"] == b"</style.css>; rel=preload; as=style"
    assert answer.header(b"x-answer") == b"yes"
    assert answer.body == b"body:hello"
    assert answer.trailer(b"x-checksum") == b"abc123" and answer.trailer(b"x-count") == b"1"
    seen = upstream.seen[0]
    assert seen["body"] == b"hello"
    assert seen["trailers"] == {b"x-digest": b"d1"}
    assert seen["headers"][b":authority"] == b"127.0.0.1:%d" % upstream_port(servers)
    assert seen["headers"][b"te"] == b"trailers"


def upstream_port(servers: Any) -> int:
    return servers.ports[0].getHost().port


GATEWAY = """
listeners:
  - {name: public, endpoint: "tcp:0", h2c: true}
limits: {max_request_body: 1000, max_header_bytes: 4000}
auth:
  keys: {type: api_key, store: "sqlite:{db}"}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: private, path: "/private/*", upstream: app, auth: [keys]}
  - {name: all, path: "/*", upstream: app}
"""


def gateway(servers: Any, tmp_path: Any, upstream: Optional[Any] = None) -> Any:
    up = servers.upstream(upstream or RecordingUpstream())
    return servers.gateway_listener(GATEWAY.replace("{db}", str(tmp_path / "k.db")), up=up)


class HoldingH2Upstream(protocol.Protocol):
    """An HTTP/2 server allowing 2 concurrent streams per connection; it answers only when the test releases it."""

    def __init__(self, factory: "HoldingH2Factory") -> None:
        import h2.settings

        self.factory = factory
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.conn.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2}
        )
        self.open = 0

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())

    def dataReceived(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.open += 1
                self.factory.most = max(self.factory.most, self.open)
            elif isinstance(event, h2.events.StreamEnded):
                self.factory.held.append((self, event.stream_id))
        self.transport.write(self.conn.data_to_send())

    def answer(self, sid: int) -> None:
        self.open -= 1
        self.conn.send_headers(sid, [(b":status", b"200"), (b"content-length", b"2")])
        self.conn.send_data(sid, b"ok", end_stream=True)
        self.transport.write(self.conn.data_to_send())


class HoldingH2Factory(protocol.Factory):
    def __init__(self) -> None:
        self.connections: List[HoldingH2Upstream] = []
        self.held: List[Any] = []
        self.most = 0

    def buildProtocol(self, addr: Any) -> HoldingH2Upstream:
        return HoldingH2Upstream(self)

    def release(self) -> None:
        held, self.held = self.held, []
        for upstream, sid in held:
            upstream.answer(sid)


@pytest_twisted.inlineCallbacks
def test_the_upstream_pool_multiplexes_within_the_servers_stream_limit(servers, reactor):
    """Six requests in flight to an h2c upstream allowing 2 streams a connection: 3 connections, never 3 streams on one."""
    from twisted.internet import defer
    from twisted.internet.task import deferLater

    upstream = HoldingH2Factory()
    port, _ = servers.gateway_listener(H2C_UPSTREAM, up=servers.listen(upstream))
    calls = [deferToThread(http_request, port, "GET", f"/held/{n}") for n in range(6)]
    for _ in range(200):
        if len(upstream.held) == 6:
            break
        yield deferLater(reactor, 0.02, lambda: None)
    assert len(upstream.held) == 6, len(upstream.held)
    assert upstream.most == 2  # SETTINGS_MAX_CONCURRENT_STREAMS honoured, and streams were multiplexed
    assert len(upstream.connections) == 3  # a new connection only when every one is full
    upstream.release()
    replies = yield defer.gatherResults(calls)
    assert [(r.status, r.body) for r in replies] == [(200, b"ok")] * 6


@pytest_twisted.inlineCallbacks
def test_policies_and_errors_as_on_http1(servers, tmp_path):
    """Auth refusal is the JSON 401 with its challenge; a 413 and a 431 end their stream only; HTTP/1.1 still works on the port."""
    port, _ = gateway(servers, tmp_path)

    def calls() -> Any:
        with H2Client(port) as client:
            refused = client.request("GET", "/private/x")
            too_large = client.request("POST", "/up", body=b"x" * 5000)
            declared = client.request("POST", "/up", [("content-length", "2000")], body=b"x" * 2000)
            headers = client.request("GET", "/h", [("x-big", "v" * 5000)])
            fine = client.request("GET", "/ok?a=1")
        return refused, too_large, declared, headers, fine, http_request(port, "GET", "/h1")

    refused, too_large, declared, headers, fine, h1 = yield deferToThread(calls)
    assert refused.status == 401 and b"unauthorized" in refused.body
    assert refused.header(b"www-authenticate") is not None
    assert too_large.status == 413 and b"payload_too_large" in too_large.body
    assert declared.status == 413
    assert headers.status == 431
    assert fine.status == 200 and fine.body == b"hello"
    assert h1.status == 200 and h1.body == b"hello"


@pytest_twisted.inlineCallbacks
def test_rapid_reset_is_cut_off_with_enhance_your_calm(servers, tmp_path):
    """CVE-2023-44487: streams opened and cancelled in a loop end the connection with GOAWAY ENHANCE_YOUR_CALM."""
    port, generation = gateway(servers, tmp_path)

    def attack() -> Any:
        conn = RawConn(port, f"127.0.0.1:{port}")
        try:
            conn.handshake()
            block = conn.encode(conn.common_headers("POST", "/slow"))
            sid = 1
            for _ in range(1000):
                conn.headers(sid, block, end_stream=False)
                conn.rst_stream(sid, CANCEL)
                sid += 2
                if conn.closed:
                    break
            verify_connection_error(conn, ENHANCE_YOUR_CALM)
            return sid
        finally:
            conn.close()

    yield deferToThread(attack)
    exposition = generate_latest(generation.ops.registry).decode()
    assert 'twistgate_http2_connection_errors_total{code="ENHANCE_YOUR_CALM"} 1.0' in exposition


#: More CONTINUATION frames (about 44 MB) than loopback's socket buffers hold
#: (tcp_rmem's maximum is 32 MB here): the client notices the gateway's close
#: by a failing send only once the buffers are full, so with a smaller flood a
#: gateway slow to be scheduled (CI saw it once with 10,000 frames, 2.2 MB)
#: let the client send everything into the buffers before it cut the flood off.
FLOOD_FRAMES = 200_000


@pytest_twisted.inlineCallbacks
def test_continuation_flood_is_cut_off(servers, tmp_path):
    """CVE-2024-27316: a header block that never ends is refused long before it fills memory."""
    port, _ = gateway(servers, tmp_path)

    def attack() -> Any:
        conn = RawConn(port, f"127.0.0.1:{port}")
        try:
            conn.handshake()
            conn.headers(1, conn.encode(conn.common_headers()), end_headers=False)
            sent = 0
            for i in range(FLOOD_FRAMES):
                conn.continuation(1, conn.encode([(f"x-flood-{i}", "a" * 200)]), end_headers=False)
                sent += 1
                if conn.closed:
                    break
            verify_connection_error(conn, ENHANCE_YOUR_CALM)
            return sent
        finally:
            conn.close()

    sent = yield deferToThread(attack)
    assert sent < FLOOD_FRAMES


@implementer(IPushProducer)
class Firehose(protocol.Protocol):
    """An HTTP/1.1 upstream that streams a big body as fast as its socket takes it, counting what it wrote."""

    total = 32 * 1024 * 1024
    chunk = b"z" * 65536

    def __init__(self, stats: Dict[str, int]) -> None:
        self.stats = stats
        self.paused = False
        self.started = False

    def dataReceived(self, data: bytes) -> None:
        if self.started or b"\r\n\r\n" not in data:
            return
        self.started = True
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.total)
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.stats["written"] < self.total:
            self.transport.write(self.chunk)
            self.stats["written"] += len(self.chunk)
        if self.stats["written"] >= self.total:
            self.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True


@pytest_twisted.inlineCallbacks
def test_a_client_that_does_not_read_holds_the_upstream(servers, tmp_path, reactor):
    """Flow control end to end: with the client's window closed the upstream is paused; reading again gets every byte."""
    stats = {"written": 0}
    factory = protocol.Factory.forProtocol(lambda: Firehose(stats))
    up = servers.listen(factory)
    port, _ = servers.gateway_listener(GATEWAY.replace("{db}", str(tmp_path / "k.db")), up=up)

    def stall_then_read() -> Any:
        client = H2Client(port, auto_ack=False)
        try:
            sid = client.open("GET", "/big")
            deadline = time.monotonic() + 1.0
            client.sock.settimeout(0.2)
            while time.monotonic() < deadline:
                try:
                    client.read_some()
                except OSError:
                    pass
            stalled_at = stats["written"]
            client.sock.settimeout(10)
            client.auto_ack = True
            answer = client.answers[sid]
            client.conn.acknowledge_received_data(len(answer._body), sid)
            # Wide windows from here on, so the rest reads quickly.
            client.conn.update_settings({4: 8 * 1024 * 1024})
            client.conn.increment_flow_control_window(64 * 1024 * 1024)
            client.conn.increment_flow_control_window(8 * 1024 * 1024, sid)
            client.flush()
            answer = client.wait(sid)
            return stalled_at, len(answer._body)
        finally:
            client.close()

    stalled_at, received = yield deferToThread(stall_then_read)
    assert stalled_at < Firehose.total // 3, stalled_at
    assert received == Firehose.total


class Sink(protocol.Protocol):
    """An HTTP/1.1 upstream that stops reading after the request's head until told to go on, then answers with the body's size."""

    def __init__(self, state: Dict[str, Any]) -> None:
        state["sink"] = self
        self.state = state
        self.head: Optional[bytes] = None
        self.buffer = b""
        self.received = 0

    def dataReceived(self, data: bytes) -> None:
        if self.head is None:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            self.head, data = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.pauseProducing()  # read nothing more: the gateway's writes back up
        self.received += len(data)
        if self.received >= self.state["total"]:
            body = b"%d" % self.received
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest_twisted.inlineCallbacks
def test_an_upstream_that_does_not_read_holds_the_client_by_flow_control(servers, reactor):
    """Request direction: the client's stream window is not reopened while the upstream reads nothing; once it reads, the whole body passes."""
    import socket

    total = 64 * 1024 * 1024
    state: Dict[str, Any] = {"total": total}
    up = servers.listen(protocol.Factory.forProtocol(lambda: Sink(state)))
    yaml = """
listeners:
  - {name: public, endpoint: "tcp:0", h2c: true}
limits: {max_request_body: 100MiB}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: all, path: "/*", upstream: app}
"""
    port, _ = servers.gateway_listener(yaml, up=up)

    def upload() -> Any:
        client = H2Client(port)
        try:
            sid = client.open("POST", "/upload", [("content-length", str(total))], end=False)
            sent = 0
            client.sock.settimeout(0.2)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and sent < total:
                window = min(client.conn.local_flow_control_window(sid), client.conn.max_outbound_frame_size, total - sent)
                if window > 0:
                    client.conn.send_data(sid, b"u" * window)
                    client.flush()
                    sent += window
                    continue
                try:
                    client.read_some()
                except socket.timeout:
                    pass
            stalled_at, window_left = sent, client.conn.local_flow_control_window(sid)
            reactor.callFromThread(state["sink"].transport.resumeProducing)
            client.sock.settimeout(10)
            client.send(sid, b"u" * (total - sent), end=True)
            return stalled_at, window_left, client.wait(sid)
        finally:
            client.close()

    stalled_at, window_left, answer = yield deferToThread(upload)
    assert stalled_at < total // 3, stalled_at  # windows and socket buffers, not the whole upload
    assert window_left == 0  # held by HTTP/2 flow control (not by a blocked TCP write)
    assert answer.status == 200 and answer.body == str(total).encode()


@pytest_twisted.inlineCallbacks
def test_malformed_request_resets_its_stream_only(servers, tmp_path):
    """An uppercase header name is RST_STREAM PROTOCOL_ERROR; the next request on the same connection is answered."""
    port, _ = gateway(servers, tmp_path)

    def calls() -> Any:
        conn = RawConn(port, f"127.0.0.1:{port}")
        try:
            conn.handshake()
            conn.headers(1, conn.encode(conn.common_headers() + [("X-Upper", "1")]))
            from tests.h2_frames import verify_headers_frame, verify_stream_error, PROTOCOL_ERROR

            verify_stream_error(conn, PROTOCOL_ERROR)
            conn.headers(3)
            verify_headers_frame(conn, 3)
            return True
        finally:
            conn.close()

    assert (yield deferToThread(calls))


@pytest_twisted.inlineCallbacks
def test_an_idle_connection_gets_goaway_no_error_after_limits_idle_timeout(servers):
    """limits.idle_timeout on HTTP/2: no stream for that long is a GOAWAY NO_ERROR, then the close; a stream in between resets the wait."""
    up = servers.upstream(RecordingUpstream())
    port, _ = servers.gateway_listener(H2C_UPSTREAM.replace("listeners:", "limits: {idle_timeout: 600ms}\nlisteners:").replace(
        "app: {protocol: h2c, ", "app: {"), up=up)

    def idle() -> Any:
        with H2Client(port) as client:
            started = time.monotonic()
            time.sleep(0.4)
            assert client.request("GET", "/one").status == 200  # 0.4 s: still open, and the wait starts again
            answered = time.monotonic()
            while client.goaway is None:
                client.read_some()
            got_goaway = time.monotonic()
            try:
                while True:
                    client.read_some()
            except ConnectionError:
                pass
            return client.goaway.error_code, answered - started, got_goaway - answered

    code, before, after = yield deferToThread(idle)
    assert code == 0
    assert 0.4 <= before < 0.6 and 0.5 < after < 2.0, (before, after)


@pytest_twisted.inlineCallbacks
def test_draining_sends_goaway_and_finishes_streams(servers, tmp_path):
    """While the gateway drains, a request is still answered, with a GOAWAY NO_ERROR so the client opens no more."""
    port, generation = gateway(servers, tmp_path)
    resource = servers.ports[-1].factory.h2.handler  # the gateway's root resource, shared by both engines
    resource.draining = True

    def call() -> Any:
        with H2Client(port) as client:
            answer = client.request("GET", "/x")
            while client.goaway is None:
                client.read_some()
            return answer, client.goaway

    answer, goaway = yield deferToThread(call)
    assert answer.status == 200
    assert goaway.error_code == 0
