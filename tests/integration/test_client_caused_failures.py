"""
Issue 14, hardening items 1 and 2, on both HTTP/1.1 engines over real sockets.

1. Client-caused failures are not upstream failures: a chunked upload that
   grows past ``max_request_body`` while it streams upstream is 413 (not
   502), an upload the client stalls is 408 (not 504), and neither is
   charged to the upstream: its breaker stays closed (a threshold of 1
   would open it), it is not ejected, and no retry is spent.
2. ``limits.client_header_timeout`` / ``client_body_timeout`` (408 and
   close), and ``limits.request_buffering: true``: the whole body is read
   before a target is chosen, so a slow upload holds no upstream connection.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Tuple

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.conftest import RawUpstream, RecordingUpstream

pytestmark = pytest.mark.integration

GATEWAY = """
listeners: [{name: p, endpoint: "tcp:0"}]
limits: {max_request_body: 1KiB, client_header_timeout: 1s, client_body_timeout: 1s BUFFERING}
upstreams:
  app:
    targets: [{url: "http://127.0.0.1:{up}"}]
    circuit_breaker: {failure_threshold: 1, recovery_timeout: 60s}
    outlier_detection: {consecutive_failures: 1, statuses: [502, 503, 504]}
    retry: {attempts: 3, on: [connect_failure, reset, timeout, 502, 503, 504]}
routes:
  - {name: all, path: "/*", upstream: app}
"""


def _gateway(servers: Any, upstream: int, buffering: bool = False) -> Tuple[int, Any]:
    text = GATEWAY.replace(" BUFFERING", ", request_buffering: true" if buffering else "")
    return servers.gateway(text, up=upstream)


def _talk(port: int, *parts: bytes, pause: float = 0.3, timeout: float = 8.0) -> Tuple[bytes, float]:
    """Send `parts` with `pause` between them, then read until the gateway closes: (answer, seconds after the last part)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            try:
                sock.sendall(part)
            except OSError:  # the gateway answered and closed already
                break
        sent = time.monotonic()
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks), time.monotonic() - sent


def _status_and_error(raw: bytes) -> Tuple[int, str]:
    assert raw.startswith(b"HTTP/1.1 "), raw
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(raw.split(b" ", 2)[1]), json.loads(body)["error"]


def _uncharged(generation: Any) -> None:
    """The upstream's target carries no failure of the client's making."""
    [target] = generation.upstreams["app"].snapshot()
    assert target["breaker"] == "closed" and not target["ejected"] and target["last_error"] is None, target


def _get(port: int) -> int:
    return int(_talk(port, b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")[0].split(b" ", 2)[1])


@pytest_twisted.inlineCallbacks
def test_an_upload_growing_past_the_limit_is_413_and_not_the_upstreams_failure(servers):
    upstream = RecordingUpstream()
    gw, generation = _gateway(servers, servers.upstream(upstream))
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"300\r\n" + b"x" * 0x300 + b"\r\n"  # 768 bytes: the second one takes the body past 1 KiB
    for _ in range(2):  # a threshold of 1: one charged failure would open the breaker
        raw, _ = yield deferToThread(_talk, gw, head + chunk, chunk, chunk + b"0\r\n\r\n")
        assert _status_and_error(raw) == (413, "payload_too_large")
    _uncharged(generation)
    assert (yield deferToThread(_get, gw)) == 200
    assert generation.upstreams["app"].budget.snapshot()["retries"] == 0


@pytest_twisted.inlineCallbacks
def test_a_stalled_upload_is_408_at_the_body_timeout_and_not_the_upstreams_failure(servers):
    upstream = RecordingUpstream()
    gw, generation = _gateway(servers, servers.upstream(upstream))
    for _ in range(2):
        raw, took = yield deferToThread(
            _talk, gw, b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", b"0123456789"
        )
        assert _status_and_error(raw) == (408, "request_timeout")
        assert 0.5 < took < 4, took  # client_body_timeout: 1s, not the upstream's read timeout (30s)
    _uncharged(generation)
    assert (yield deferToThread(_get, gw)) == 200
    assert generation.upstreams["app"].budget.snapshot()["retries"] == 0
    assert upstream.requests[-1].uri == b"/after"


@pytest_twisted.inlineCallbacks
def test_a_slow_request_head_is_408_at_client_header_timeout(servers):
    gw, _ = _gateway(servers, servers.upstream(RecordingUpstream()))
    raw, took = yield deferToThread(_talk, gw, b"GET /x HTTP/1.1\r\nHost: a\r\n")
    assert _status_and_error(raw) == (408, "request_timeout")
    assert took < 4, took


def _raw_upstream(servers: Any) -> Tuple[int, Any]:
    def answer(connection: RawUpstream) -> None:
        head, _, body = connection.buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        connection.answered = len(body) >= length
        if connection.answered:
            connection.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def data_received(self: RawUpstream, data: bytes) -> None:  # answer once the whole body is in
        self.buffer += data
        if b"\r\n\r\n" in self.buffer and not getattr(self, "answered", False):
            self.factory.handler(self)

    port, factory = servers.raw_upstream(answer)
    factory.buildProtocol = lambda addr: type("WholeBody", (RawUpstream,), {"dataReceived": data_received})(factory)
    return port, factory


@pytest.mark.parametrize("buffering", [True, False], ids=["buffered", "streamed"])
@pytest_twisted.inlineCallbacks
def test_request_buffering_holds_no_upstream_connection_during_a_slow_upload(servers, buffering):
    port, upstream = _raw_upstream(servers)
    gw, _ = _gateway(servers, port, buffering=buffering)
    connected_midway = []

    def slow_upload() -> bytes:
        with socket.create_connection(("127.0.0.1", gw), timeout=8) as sock:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
            time.sleep(0.5)  # well within client_body_timeout
            connected_midway.append(len(upstream.connections))
            sock.sendall(b"def")
            return sock.recv(65536)

    raw = yield deferToThread(slow_upload)
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"abcdef"), raw
    assert connected_midway == [0 if buffering else 1]
    assert len(upstream.connections) == 1


@pytest_twisted.inlineCallbacks
def test_a_buffered_upload_that_stalls_never_reaches_the_upstream(servers):
    port, upstream = _raw_upstream(servers)
    gw, generation = _gateway(servers, port, buffering=True)
    raw, _ = yield deferToThread(_talk, gw, b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", b"0123")
    assert _status_and_error(raw) == (408, "request_timeout")
    assert upstream.connections == []
    _uncharged(generation)
