"""
Edge routing end to end over real sockets: the gateway as the twistd
service runs it (GatewayService: every listener with its name), real
upstreams, blocking clients in threads.
"""

from __future__ import annotations

import socket
import textwrap
import time
from collections import Counter
from typing import Any, Dict

import pytest_twisted
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource

from tests.integration.conftest import RecordingUpstream, http_request, raw_exchange
from twistgate.config import load_text
from twistgate.service import GatewayService


class Live:
    """A GatewayService on free ports; `ports` maps listener names to port numbers."""

    def __init__(self, reactor: Any, yaml: str, **ports: int) -> None:
        text = textwrap.dedent(yaml)
        for name, port in ports.items():
            text = text.replace("{" + name + "}", str(port))
        self.service = GatewayService(load_text(text, "live.yaml"), reactor, handle_signals=False)
        self.ports: Dict[str, int] = {}

    @inlineCallbacks
    def start(self) -> Any:
        self.service.startService()
        yield self.service.ready
        found = yield self.service.listening_ports()
        self.ports = {name.split(":", 1)[1]: p.getHost().port for name, p in found.items() if name.startswith("listener:")}

    def stop(self) -> Any:
        return self.service.stopService()


class Named(Resource):
    isLeaf = True

    def __init__(self, name: bytes) -> None:
        super().__init__()
        self.name = name

    def render(self, request: Any) -> bytes:
        request.setHeader(b"Server", b"Apache/2.4.1 (Unix)")
        return self.name


EDGE = """
listeners:
  - {name: plain, endpoint: "tcp:0:interface=127.0.0.1", redirect_https: 8443}
  - {name: public, endpoint: "tcp:0:interface=127.0.0.1"}
  - {name: internal, endpoint: "tcp:0:interface=127.0.0.1"}
defaults:
  hide_server_header: true
  headers: {response: {set: {X-Edge: "1"}}}
upstreams:
  api: {targets: [{url: "http://127.0.0.1:{api}"}]}
  v2: {targets: [{url: "http://127.0.0.1:{v2}"}]}
routes:
  - {name: admin, path: /admin/*, upstream: v2, listeners: [internal]}
  - {name: legacy, path: "~^/legacy/(?P<rest>.*)$", redirect: {to: "/api/v1/{rest}", status: 301}}
  - {name: gone, path: /old-thing, respond: {status: 410, body: '{"error": "gone"}', headers: {Content-Type: application/json}}}
  - name: canary
    path: /api/*
    upstream: v2
    match: {headers: {X-Canary: "1"}}
  - {name: api, path: /api/*, upstream: api}
  - name: split
    path: /s/*
    split: [{upstream: v2, weight: 1}, {upstream: api, weight: 1}]
    sticky: {cookie: tg, max_age: 1h}
"""


@pytest_twisted.inlineCallbacks
def test_edge_routing_end_to_end(reactor, servers):
    api, v2 = servers.upstream(Named(b"api")), servers.upstream(Named(b"v2"))
    gateway = Live(reactor, EDGE, api=api, v2=v2)
    yield gateway.start()
    try:
        public, internal, plain = gateway.ports["public"], gateway.ports["internal"], gateway.ports["plain"]

        reply = yield deferToThread(http_request, plain, "GET", "/api/x?q=1", [("Host", "shop.example")])
        assert (reply.status, reply.header("Location")) == (308, "https://shop.example:8443/api/x?q=1")

        reply = yield deferToThread(http_request, internal, "GET", "/admin/x")
        assert reply.body == b"v2"
        reply = yield deferToThread(http_request, public, "GET", "/admin/x")
        assert reply.status == 404 and reply.header("X-Edge") == "1"  # defaults reach the 404 too

        reply = yield deferToThread(http_request, public, "GET", "/legacy/a/b?x=1")
        assert (reply.status, reply.header("Location")) == (301, "/api/v1/a/b?x=1")
        reply = yield deferToThread(http_request, public, "GET", "/old-thing")
        assert (reply.status, reply.body) == (410, b'{"error": "gone"}')

        reply = yield deferToThread(http_request, public, "GET", "/api/x", [("X-Canary", "1")])
        assert reply.body == b"v2"
        reply = yield deferToThread(http_request, public, "GET", "/api/x", [("X-Canary", "0")])
        assert reply.body == b"api" and reply.header("Server") is None and reply.header("X-Edge") == "1"

        # The engine's own refusals carry the defaults' fixed headers too (431, 413 before routing).
        answer = yield deferToThread(raw_exchange, public, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431") and b"X-Edge: 1\r\n" in answer
        answer = yield deferToThread(raw_exchange, public, b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413") and b"X-Edge: 1\r\n" in answer

        first = yield deferToThread(http_request, public, "GET", "/s/x")
        cookie = first.header("Set-Cookie").split(";")[0]
        served = Counter()
        for _ in range(10):
            reply = yield deferToThread(http_request, public, "GET", "/s/x", [("Cookie", cookie)])
            served[reply.body] += 1
        assert served == {first.body: 10}
    finally:
        yield gateway.stop()


BACKUP = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
upstreams:
  api:
    targets: [{url: "http://127.0.0.1:{primary}"}, {url: "http://127.0.0.1:{spare}", backup: true}]
    health_check: {path: /health, interval: 100ms, timeout: 50ms, jitter: 0s, healthy_threshold: 1, unhealthy_threshold: 1}
routes:
  - {name: api, path: /*, upstream: api}
"""


class Switchable(Resource):
    isLeaf = True

    def __init__(self, name: bytes) -> None:
        super().__init__()
        self.name = name
        self.up = True

    def render(self, request: Any) -> bytes:
        if not self.up:
            request.setResponseCode(503)
        return self.name


@pytest_twisted.inlineCallbacks
def test_backup_takes_over_only_while_the_primary_is_down_and_traffic_returns(reactor, servers):
    primary, spare = Switchable(b"primary"), Switchable(b"spare")
    gateway = Live(reactor, BACKUP, primary=servers.upstream(primary), spare=servers.upstream(spare))
    yield gateway.start()
    port = gateway.ports["public"]

    @inlineCallbacks
    def bodies(n: int) -> Any:
        seen = Counter()
        for _ in range(n):
            reply = yield deferToThread(http_request, port, "GET", "/x")
            seen[reply.body] += 1
        return seen

    try:
        assert (yield bodies(5)) == {b"primary": 5}
        primary.up = False
        yield _sleep(reactor, 0.4)  # health checks mark it down
        assert (yield bodies(5)) == {b"spare": 5}
        primary.up = True
        yield _sleep(reactor, 0.4)
        assert (yield bodies(5)) == {b"primary": 5}
    finally:
        yield gateway.stop()


MAX_CONNECTIONS = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
limits: {max_connections: 2}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: all, path: /*, upstream: app}
"""


def _held_connections(port: int, count: int) -> Any:
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.append(sock)
    return held


def _closed_at_once(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


@pytest_twisted.inlineCallbacks
def test_max_connections_closes_new_connections_beyond_it_and_counts_them(reactor, servers):
    gateway = Live(reactor, MAX_CONNECTIONS, up=servers.upstream(RecordingUpstream()))
    yield gateway.start()
    port = gateway.ports["public"]
    try:
        held = yield deferToThread(_held_connections, port, 2)
        yield _sleep(reactor, 0.1)
        assert (yield deferToThread(_closed_at_once, port)) is True
        metrics = gateway.service.ops.registry.get_sample_value
        assert metrics("twistgate_connections_refused_total", {"listener": "public"}) >= 1
        for sock in held:
            sock.close()
        yield _sleep(reactor, 0.1)
        reply = yield deferToThread(http_request, port, "GET", "/x")
        assert reply.status == 200  # below the limit again
    finally:
        yield gateway.stop()


UPLOAD = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
limits: {max_request_body: 1KiB}
upstreams:
  app:
    targets: [{url: "http://127.0.0.1:{up}"}]
    timeouts: {read: 5s, write: 300ms}
routes:
  - {name: upload, path: /upload, upstream: app, max_request_body: 64MiB, access_log: false}
  - {name: all, path: /*, upstream: app}
"""


@pytest_twisted.inlineCallbacks
def test_route_max_request_body_over_real_sockets(reactor, servers):
    upstream = RecordingUpstream()
    gateway = Live(reactor, UPLOAD, up=servers.upstream(upstream))
    yield gateway.start()
    port = gateway.ports["public"]
    try:
        reply = yield deferToThread(http_request, port, "POST", "/upload", None, b"x" * 100_000)
        assert reply.status == 200 and len(upstream.requests[-1].body) == 100_000
        reply = yield deferToThread(http_request, port, "POST", "/other", None, b"x" * 2000)
        assert reply.status == 413 and reply.json()["error"] == "payload_too_large"
        # A chunked body with no length: counted as it streams.
        chunked = b"POST /other HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"y" * 2048 + b"\r\n0\r\n\r\n"
        answer = yield deferToThread(raw_exchange, port, chunked, timeout=3)
        assert answer.startswith(b"HTTP/1.1 413")
    finally:
        yield gateway.stop()


@pytest_twisted.inlineCallbacks
def test_upstream_write_timeout_when_the_upstream_stops_reading(reactor, servers):
    def never_reads(connection: Any) -> None:
        connection.transport.pauseProducing()  # reads nothing more: the gateway's writes back up

    upstream_port, factory = servers.raw_upstream(never_reads)
    gateway = Live(reactor, UPLOAD, up=upstream_port)
    yield gateway.start()
    port = gateway.ports["public"]
    try:
        started = time.monotonic()
        answer = yield deferToThread(_upload_until_answered, port, 32 * 1024 * 1024)
        elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 504") and b'"error":"upstream_timeout"' in answer
        assert elapsed < 4  # the write timeout (300ms), not the read timeout (5s)
    finally:
        yield gateway.stop()


def _upload_until_answered(port: int, size: int) -> bytes:
    """Send a large body for as long as the gateway reads it; return the answer once one comes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        sock.settimeout(0.05)
        chunk, sent, received = b"z" * 65536, 0, b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sent < size:
                try:
                    sent += sock.send(chunk)
                except socket.timeout:
                    pass
                except OSError:
                    sent = size  # the gateway closed its side
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            received += data
        return received


def _sleep(reactor: Any, seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


POLICIES = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
access_log: {path: "{log}", flush_interval: 0s}
auth:
  staff: {type: basic, htpasswd: "{htpasswd}"}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - name: office
    path: /office/*
    upstream: app
    auth: [staff]
    plugins: {ip_allow: {cidrs: [10.0.0.0/8]}}
  - name: local
    path: /local/*
    upstream: app
    auth: [staff]
    plugins: {ip_allow: {cidrs: [127.0.0.0/8]}}
  - {name: slow, path: /slow/*, upstream: app, concurrency: {limit: 1, key: route}}
  - {name: health, path: /health, upstream: app, access_log: false}
  - {name: pages, path: /pages/*, upstream: app, cache: {ttl: {200: 60s, 404: 10s}}}
"""


class Slow(Resource):
    """Holds /slow/* requests until released; counts /pages/* fetches; 404 for /pages/missing."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list = []
        self.fetches: Counter = Counter()

    def render(self, request: Any) -> Any:
        from twisted.web.server import NOT_DONE_YET

        if request.path.startswith(b"/slow/"):
            self.held.append(request)
            return NOT_DONE_YET
        self.fetches[request.path] += 1
        if request.path == b"/pages/missing":
            request.setResponseCode(404)
        return b"page"


@pytest_twisted.inlineCallbacks
def test_policies_over_real_sockets(reactor, servers, tmp_path):
    import bcrypt
    import json

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("ann:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode() + "\n")
    log = tmp_path / "access.log"
    upstream = Slow()
    gateway = Live(reactor, POLICIES, up=servers.upstream(upstream), log=str(log), htpasswd=str(htpasswd))
    yield gateway.start()
    port = gateway.ports["public"]
    try:
        # Network rules before authentication: 403 from a denied address, never a password challenge.
        reply = yield deferToThread(http_request, port, "GET", "/office/x")
        assert reply.status == 403 and reply.header("WWW-Authenticate") is None
        reply = yield deferToThread(http_request, port, "GET", "/local/x")  # an allowed address: now the challenge
        assert reply.status == 401 and reply.header("WWW-Authenticate").startswith("Basic")

        # Concurrency: the second request in flight is refused; the slot comes back when the first ends.
        first = deferToThread(http_request, port, "GET", "/slow/1")
        while not upstream.held:
            yield _sleep(reactor, 0.02)
        reply = yield deferToThread(http_request, port, "GET", "/slow/2")
        assert reply.status == 429 and reply.json()["error"] == "concurrency_limited"
        upstream.held.pop().finish()
        assert (yield first).status == 200
        second = deferToThread(http_request, port, "GET", "/slow/3")
        while not upstream.held:
            yield _sleep(reactor, 0.02)
        upstream.held.pop().finish()
        assert (yield second).status == 200

        # Cache lifetimes per status.
        for path in ("/pages/a", "/pages/a", "/pages/missing", "/pages/missing"):
            yield deferToThread(http_request, port, "GET", path)
        assert upstream.fetches == {b"/pages/a": 1, b"/pages/missing": 1}

        # access_log: false
        yield deferToThread(http_request, port, "GET", "/health")
        routes = [json.loads(line)["route"] for line in log.read_text().splitlines()]
        assert "health" not in routes and "slow" in routes and "office" in routes
    finally:
        yield gateway.stop()
