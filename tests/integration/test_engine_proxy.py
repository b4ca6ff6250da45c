"""
The engine over real sockets: the minimal proxy of bench/engine_proxy.py
(server + pool only) between blocking clients and scripted upstreams.
Covers issue 18's races, streaming with flat memory, and back-pressure.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import platform
import resource
import socket
import time
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet import protocol
from twisted.internet.threads import deferToThread

from twistgate.engine import HTTP1ServerFactory, ServerLimits

MiB = 1024 * 1024
_BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "engine_proxy.py")


def _load_bench_proxy() -> Any:
    spec = importlib.util.spec_from_file_location("engine_proxy_bench", _BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture
def engine() -> str:
    """These tests drive the engine directly, not a gateway: once is enough."""
    return "httptools"


@pytest.fixture
def bench_proxy(servers, reactor):
    """Start the bench proxy in-process in front of an upstream port; yields (start(upstream_port) -> port, proxies)."""
    module = _load_bench_proxy()
    proxies: List[Any] = []

    def start(upstream_port: int, **limits: Any) -> int:
        proxy = module.EngineProxy(f"http://127.0.0.1:{upstream_port}")
        proxies.append(proxy)
        factory = HTTP1ServerFactory(proxy, limits=ServerLimits(**limits), clock=reactor)
        return servers.listen(factory)

    yield start, proxies
    for proxy in proxies:
        pytest_twisted.blockon(proxy.pool.close())


class ScriptedUpstream(protocol.Protocol):
    """Reads each request (head + Content-Length body) and answers with `factory.answer`."""

    def connectionMade(self) -> None:
        self.buffer = b""
        self.factory.connections += 1
        self.idle_timer = None
        self._arm()

    def _arm(self) -> None:
        idle = self.factory.idle_close
        if idle is not None:
            if self.idle_timer is not None and self.idle_timer.active():
                self.idle_timer.cancel()
            self.idle_timer = self.factory.reactor.callLater(idle, self.transport.loseConnection)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.factory.requests.append(head.split(b"\r\n")[0])
            self.transport.write(self.factory.answer)
            if self.factory.close_after is not None:
                self.factory.reactor.callLater(self.factory.close_after, self.transport.loseConnection)
            self._arm()

    def connectionLost(self, reason: Any = None) -> None:
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()


class ScriptedFactory(protocol.Factory):
    protocol = ScriptedUpstream

    def __init__(self, reactor: Any, answer: bytes, close_after: Any = None, idle_close: Any = None) -> None:
        self.reactor = reactor
        self.answer = answer
        self.close_after = close_after
        self.idle_close = idle_close
        self.connections = 0
        self.requests: List[bytes] = []


def _post(conn: http.client.HTTPConnection, headers: Any = None) -> Any:
    conn.request("POST", "/p", body=b"payload", headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


@pytest_twisted.inlineCallbacks
def test_upstream_answering_connection_close_never_costs_a_post(servers, bench_proxy, reactor):
    """Issue 18: `Connection: Close` (capital C) then a close 100 ms later: 30 pairs of back-to-back POSTs, all 200."""
    start, _ = bench_proxy
    upstream = ScriptedFactory(reactor, b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nok", close_after=0.1)
    port = start(servers.listen(upstream))

    def client() -> List[int]:
        statuses = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(30):
            statuses.append(_post(conn)[0])
            statuses.append(_post(conn)[0])
        conn.close()
        return statuses

    statuses = yield deferToThread(client)
    assert statuses == [200] * 60
    assert upstream.connections == 60  # never reused


@pytest_twisted.inlineCallbacks
def test_upstream_closing_idle_connections_after_1s(servers, bench_proxy, reactor):
    """Issue 18: requests exactly 1 s apart to an upstream that closes connections idle for 1 s."""
    start, proxies = bench_proxy
    upstream = ScriptedFactory(reactor, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", idle_close=1.0)
    port = start(servers.listen(upstream))
    events: List[str] = []
    proxies[0].pool.on_event = lambda name, key: events.append(name)

    def client() -> Any:
        safe, plain = [], []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(4):
            conn.request("GET", "/g")
            response = conn.getresponse()
            safe.append(response.status)
            response.read()
            time.sleep(1.0)
            safe.append(_post(conn, {"Idempotency-Key": f"k{i}"})[0])
            time.sleep(1.0)
        for _ in range(4):
            status, body = _post(conn)
            plain.append((status, body))
            if status != 200:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            time.sleep(1.0)
        conn.close()
        return safe, plain

    safe, plain = yield deferToThread(client)
    assert safe == [200] * 8
    for status, body in plain:  # 200, or the dedicated error: never a hang (the client would time out)
        assert status == 200 or (status == 502 and json.loads(body)["error"] == "upstream_closed_connection")
    assert set(events) <= {"stale_retry", "closed_by_upstream"}


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Streamer(protocol.Protocol):
    """An upstream that sends `total` bytes with Content-Length, honouring back-pressure."""

    def dataReceived(self, data: bytes) -> None:
        if getattr(self, "started", False):
            return
        self.started = True
        total = self.factory.total
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        self.left = total
        self.paused = False
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True
        self.factory.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        chunk = b"z" * 65536
        while not self.paused and self.left > 0:
            self.transport.write(chunk[: self.left])
            self.left -= min(len(chunk), self.left)
            self.factory.sent = self.factory.total - self.left
        if self.left <= 0:
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self.left = 0


class StreamerFactory(protocol.Factory):
    protocol = Streamer

    def __init__(self, total: int) -> None:
        self.total = total
        self.pauses = 0
        self.sent = 0


#: The first ~200 MiB through the relay raise the peak RSS for reasons of the
#: interpreter, not of the engine: on PyPy (tests/pypy.sh: PYPY_GC_MAX_DELTA=16MB)
#: its JIT compiles the relay loop and its incremental GC grows to its working
#: heap, by +38 to +120 MiB depending on how much else the process holds (the
#: whole suite's process: +64); the next 400 MiB then raised it by +0 to +20.
#: The growth does not follow the body's size: not bodies held.  CPython: +1, +1.
#: In the whole PyPy suite (2026-12-05, after the warm-up) the 400 MiB still
#: raised it by +73: PyPy's bound is a quarter of the body, which a body held
#: whole (its 400 MiB) cannot meet; CPython's stays at 40.
WARM_UP = 200 * MiB
GROWTH_BOUND_MIB = 100 if platform.python_implementation() == "PyPy" else 40


@pytest_twisted.inlineCallbacks
def test_200_mib_download_streams_with_flat_memory(servers, bench_proxy):
    """After 200 MiB through once, 400 MiB more do not raise the peak RSS: a body held whole would need its 400 MiB."""
    start, _ = bench_proxy

    def download(port: int, total: int) -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            received, head = 0, b""
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    return received
                if not head:
                    head, _, data = data.partition(b"\r\n\r\n")
                received += len(data)

    warm_up, measured = (start(servers.listen(StreamerFactory(total))) for total in (WARM_UP, 2 * WARM_UP))
    assert (yield deferToThread(download, warm_up, WARM_UP)) == WARM_UP
    before = _maxrss_mib()
    # More than the warm-up: a body held whole cannot fit in what the warm-up freed.
    assert (yield deferToThread(download, measured, 2 * WARM_UP)) == 2 * WARM_UP
    assert _maxrss_mib() - before < GROWTH_BOUND_MIB, "the body was buffered instead of streamed"


@pytest_twisted.inlineCallbacks
def test_200_mib_upload_streams_with_flat_memory(servers, bench_proxy, reactor):
    start, _ = bench_proxy
    total = 200 * MiB
    counted = ScriptedFactory(reactor, b"")

    class Counting(protocol.Protocol):
        def connectionMade(self) -> None:
            self.seen = 0
            self.head = b""

        def dataReceived(self, data: bytes) -> None:
            if not self.head:
                self.head, _, data = data.partition(b"\r\n\r\n")
            self.seen += len(data)
            if self.seen >= total:
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(str(self.seen)), self.seen))

    counted.protocol = Counting
    port = start(servers.listen(counted), max_request_body=1 << 30)
    before = _maxrss_mib()

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % total)
            block = b"u" * MiB
            for _ in range(200):
                sock.sendall(block)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk

    data = yield deferToThread(client)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"%d" % total)
    assert _maxrss_mib() - before < 40, "the upload was buffered instead of streamed"


@pytest_twisted.inlineCallbacks
def test_slow_client_pauses_the_upstream(servers, bench_proxy):
    start, _ = bench_proxy
    upstream = StreamerFactory(200 * MiB)
    port = start(servers.listen(upstream))

    def client() -> Any:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        got = 0
        while got < 2 * MiB:
            got += len(sock.recv(65536))
        time.sleep(1.0)
        return sock, got

    sock, got = yield deferToThread(client)
    try:
        assert upstream.pauses > 0
        assert upstream.sent - got < 32 * MiB
    finally:
        sock.close()


@pytest_twisted.inlineCallbacks
def test_keep_alive_and_pipelining_over_real_sockets(servers, bench_proxy, reactor):
    start, _ = bench_proxy
    upstream = ScriptedFactory(reactor, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    port = start(servers.listen(upstream))

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk

    data = yield deferToThread(client)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert upstream.requests == [b"GET /1 HTTP/1.1", b"GET /2 HTTP/1.1", b"GET /3 HTTP/1.1"]
    assert upstream.connections == 1  # one pooled upstream connection served all three
