"""
Server-Sent Events and other streams without a length, over real sockets on
both HTTP/1.1 engines: each event reaches the client within milliseconds of
the upstream writing it, byte for byte (comments and heartbeats kept),
never compressed, never cached; the route timeout bounds the wait for the
head, not a healthy stream; the read timeout is an idle timeout between
chunks.
"""

from __future__ import annotations

import socket
import time
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

pytestmark = pytest.mark.integration

CONFIG = """
listeners:
  - {name: public, endpoint: "tcp:0"}
upstreams:
  events:
    targets: [{url: "http://127.0.0.1:{up}"}]
    timeouts: {read: 600ms}
routes:
  - {name: events, path: "/*", upstream: events, timeout: 300ms, compression: true, cache: {ttl: 60s}}
"""


class EventSource(Resource):
    """``text/event-stream``: `events` events every `every` seconds (a comment between each), then stops or stalls."""

    isLeaf = True

    def __init__(self, reactor: Any, events: int = 12, every: float = 0.1, stall: bool = False, media: bytes = b"text/event-stream") -> None:
        super().__init__()
        self.reactor = reactor
        self.events = events
        self.every = every
        self.stall = stall
        self.media = media
        self.written: List[float] = []
        self.requests = 0

    def render_GET(self, request: Any) -> Any:
        self.requests += 1
        request.setHeader(b"Content-Type", self.media)
        request.setHeader(b"Cache-Control", b"public, max-age=60")

        def tick(n: int) -> None:
            if request._disconnected or request.finished:
                return
            if n == self.events:
                if not self.stall:
                    request.finish()
                return  # stalled: nothing more, the connection stays open
            self.written.append(time.monotonic())
            request.write(b": heartbeat\n\nid: %d\ndata: event %d\n\n" % (n, n))
            self.reactor.callLater(self.every, tick, n + 1)

        tick(0)
        return NOT_DONE_YET


def read_events(port: int, path: str = "/stream", gzip: bool = True) -> Any:
    """(head, [(arrival, event bytes)...], whole body, ended cleanly)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        accept = b"Accept-Encoding: gzip, br\r\n" if gzip else b""
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n" + accept + b"Connection: close\r\n\r\n")
        data = b""
        arrivals: List[Any] = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""  # cut by the gateway
            now = time.monotonic()
            if not chunk:
                break
            data += chunk
            arrivals.extend((now, n) for n in range(len(arrivals), data.count(b"data: event")))
        head, _, body = data.partition(b"\r\n\r\n")
        return head, arrivals, body


def assert_as_written(source: EventSource, arrivals: List[Any]) -> None:
    """
    Every event reached the client before the upstream wrote the next one
    (nothing held back), and typically well before (the median under half
    the interval; single events may wait longer on a machine busy with other work).
    """
    written = source.written
    assert [n for _, n in arrivals] == list(range(len(written)))
    for arrived, n in arrivals:
        following = written[n + 1] if n + 1 < len(written) else written[n] + source.every
        assert arrived < following, (n, arrived - written[n])
    delays = sorted(arrived - written[n] for arrived, n in arrivals)
    assert delays[len(delays) // 2] < source.every / 2, delays


def dechunk(body: bytes) -> Any:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out, True
        out += rest[:n]
        body = rest[n + 2 :]
    return out, False


@pytest_twisted.inlineCallbacks
def test_events_arrive_as_written_uncompressed_uncached_past_the_route_timeout(reactor, servers):
    source = EventSource(reactor)
    port, _ = servers.gateway(CONFIG, up=servers.upstream(source))
    head, arrivals, body = yield deferToThread(read_events, port)
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"Content-Encoding" not in head
    events, complete = dechunk(body)
    # 1.2 s of events through a route whose timeout is 300ms: the stream is not cut.
    assert complete
    assert events == b"".join(b": heartbeat\n\nid: %d\ndata: event %d\n\n" % (n, n) for n in range(12))
    assert_as_written(source, arrivals)
    # Never cached: the second client gets its own stream.
    yield deferToThread(read_events, port)
    assert source.requests == 2


@pytest_twisted.inlineCallbacks
def test_the_read_timeout_is_an_idle_timeout_between_chunks(reactor, servers):
    """Events every 400ms under a 600ms read timeout flow for 2.4s; a stall of more than 600ms cuts the stream."""
    source = EventSource(reactor, events=6, every=0.4, stall=True)
    port, _ = servers.gateway(CONFIG, up=servers.upstream(source))
    started = time.monotonic()
    head, arrivals, body = yield deferToThread(read_events, port)
    lasted = time.monotonic() - started
    events, complete = dechunk(body)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert events.count(b"data: event") == 6
    assert not complete  # cut without the last chunk: the client can tell
    assert 2.4 < lasted < 4.0, lasted


@pytest_twisted.inlineCallbacks
def test_a_stream_without_a_length_of_another_type_also_flows(reactor, servers):
    """Any response without a length streams as it comes (here NDJSON, which may be compressed, flushed per chunk)."""
    source = EventSource(reactor, media=b"application/x-ndjson")
    port, _ = servers.gateway(CONFIG, up=servers.upstream(source))
    head, arrivals, body = yield deferToThread(read_events, port, "/stream", False)
    assert_as_written(source, arrivals)
    assert dechunk(body)[1]


LIVE = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: integration-token}
websocket: {drain_timeout: 1s}
upstreams:
  events: {targets: [{url: "http://127.0.0.1:{up}"}], timeouts: {read: 5s}}
routes:
  - {name: events, path: "/*", upstream: events, timeout: 300ms}
"""


@pytest_twisted.inlineCallbacks
def test_a_reload_lets_a_stream_go_on_until_the_drain_timeout(reactor, tmp_path):
    """An endless stream keeps its generation after a reload, and is cut at websocket.drain_timeout so it retires."""
    from tests.ops.live import LiveGateway
    from twisted.internet.task import deferLater

    source = EventSource(reactor, events=1000, every=0.1)
    site = __import__("twisted.web.server", fromlist=["Site"]).Site(source)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", LIVE, up=port.getHost().port)
    yield gateway.start()
    try:
        reading = deferToThread(read_events, gateway.port)
        yield deferLater(reactor, 0.3, lambda: None)
        result = yield gateway.service.reload()
        assert result["ok"], result
        reloaded = time.monotonic()
        head, arrivals, body = yield reading
        assert 0.8 < time.monotonic() - reloaded < 3
        assert head.startswith(b"HTTP/1.1 200 ")
        assert len(arrivals) >= 10  # it went on after the reload
        assert not dechunk(body)[1]  # then cut: an event-stream client reconnects
        for _ in range(100):
            if len(gateway.service.ops.generations) == 1:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        assert len(gateway.service.ops.generations) == 1
    finally:
        yield gateway.stop()
        yield port.stopListening()
