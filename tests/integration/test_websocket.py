"""
WebSocket through the gateway over real sockets, with the `websockets`
library on both ends: the handshake is an ordinary request (routes,
auth, rate limits refuse it with their JSON errors and the upstream never
hears of it), then both directions are relayed byte for byte: messages,
subprotocol and extension negotiation, close codes and reasons, resets,
back-pressure both ways, caps, idle timeout and message size (top level and
per route), metrics and the access line.  ``engine: twisted`` answers an
upgrade with 501.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as _connect

from tests.integration.conftest import Servers, http_request
from tests.tls.harness import pki  # noqa: F401  (fixture)
from tests.tls_threads import tls_threads
from tests.ws_servers import WebSocketServer

pytestmark = pytest.mark.integration


def connect(uri: str, **options: Any) -> Any:
    """
    A client without keepalive pings, which no test here needs: its pinging
    thread and close() both join the reader thread, and on PyPy 7.3.11
    two joiners race in Thread.join (pypy/pypy#5079, fixed by #5080):
    75 of 400 connections closed with RuntimeError there, none without.
    """
    return _connect(uri, ping_interval=None, **options)

#: How long a client waits for the handshake: generous, so a loaded CI machine
#: does not fail a test that checks what the handshake does, not how fast.
OPEN_TIMEOUT = 20

CONFIG = """
listeners:
  - {name: public, endpoint: "tcp:0"}
upstreams:
  chat:
    targets: [{url: "http://127.0.0.1:{up}"}]
auth:
  tokens: {type: jwt, algorithms: [HS256], secret: websocket-test-secret-of-32-bytes-or-more}
routes:
  - {name: chat, path: /chat, upstream: chat}
  - {name: private, path: /private, upstream: chat, auth: [tokens]}
  - {name: limited, path: /limited, upstream: chat, rate_limit: {rate: 1/min, burst: 1}}
  - {name: internal, path: /internal, upstream: chat, plugins: {ip_allow: {cidrs: [10.0.0.0/8]}}}
"""


def config(extra: str = "") -> str:
    return CONFIG + extra


@pytest.fixture
def gateways(reactor: Any):
    s = Servers(reactor, "httptools")
    yield s
    s.close()


@pytest.fixture
def twisted_gateways(reactor: Any):
    s = Servers(reactor, "twisted")
    yield s
    s.close()


@pytest.fixture
def upstream():
    server = WebSocketServer()
    yield server
    server.close()


def token() -> str:
    import jwt

    return jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, "websocket-test-secret-of-32-bytes-or-more", algorithm="HS256")


def url(port: int, path: str = "/chat") -> str:
    return f"ws://127.0.0.1:{port}{path}"


def settle(reactor: Any, seconds: float = 0.05) -> Any:
    return deferLater(reactor, seconds, lambda: None)


@pytest_twisted.inlineCallbacks
def test_messages_subprotocol_and_extension_pass_both_ways(reactor, gateways, upstream):
    """Text and binary echo; the subprotocol and permessage-deflate are negotiated end to end, untouched."""
    port, _ = gateways.gateway(config(), up=upstream.port)

    def client() -> Any:
        with connect(url(port), subprotocols=["chat.v1"], open_timeout=OPEN_TIMEOUT) as ws:
            ws.send("hello")
            text = ws.recv(timeout=5)
            ws.send(b"\x00\x01binary")
            binary = ws.recv(timeout=5)
            big = "x" * 300_000
            ws.send(big)
            echoed = ws.recv(timeout=5)
            return text, binary, echoed == big, ws.subprotocol, ws.response.headers.get("Sec-WebSocket-Extensions")

    text, binary, big_ok, subprotocol, extensions = yield deferToThread(client)
    assert (text, binary, big_ok) == ("hello", b"\x00\x01binary", True)
    assert subprotocol == "chat.v1"
    assert extensions is not None and extensions.startswith("permessage-deflate")
    handshake = upstream.handshakes[0]
    assert handshake["Upgrade"].lower() == "websocket" and "upgrade" in handshake["Connection"].lower()
    assert handshake["Sec-WebSocket-Protocol"] == "chat.v1"
    assert "permessage-deflate" in handshake["Sec-WebSocket-Extensions"]
    assert handshake["Sec-WebSocket-Version"] == "13"


@pytest_twisted.inlineCallbacks
def test_close_code_and_reason_pass_both_ways(reactor, gateways):
    """A client's close (4001) reaches the upstream; an upstream's close (4002) reaches the client."""
    server = WebSocketServer(handler=lambda c: c.close(4002, "bye from upstream") if c.recv(timeout=5) == "close me" else None)
    try:
        port, _ = gateways.gateway(config(), up=server.port)

        def upstream_closes() -> Any:
            with connect(url(port), open_timeout=OPEN_TIMEOUT) as ws:
                ws.send("close me")
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=5)
                return closed.value.rcvd.code, closed.value.rcvd.reason

        assert (yield deferToThread(upstream_closes)) == (4002, "bye from upstream")
    finally:
        server.close()
    echo = WebSocketServer()
    try:
        port, _ = gateways.gateway(config(), up=echo.port)

        def client_closes() -> None:
            with connect(url(port), open_timeout=OPEN_TIMEOUT) as ws:
                ws.send("hi")
                ws.recv(timeout=5)
                ws.close(4001, "bye from client")

        yield deferToThread(client_closes)
        for _ in range(100):
            if echo.closes:
                break
            yield settle(reactor)
        assert echo.closes == [(4001, "bye from client")]
    finally:
        echo.close()


@pytest.mark.parametrize(
    "path, headers, status, error",
    [
        ("/nowhere", {}, 404, "route_not_found"),
        ("/private", {}, 401, "unauthorized"),
        ("/internal", {}, 403, "forbidden"),
        ("/private", {"Authorization": "Bearer not-a-token"}, 401, "unauthorized"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_refused_upgrades_get_the_json_error_and_never_reach_the_upstream(reactor, gateways, upstream, path, headers, status, error):
    port, _ = gateways.gateway(config(), up=upstream.port)

    def client() -> Any:
        with pytest.raises(InvalidStatus) as refused:
            connect(url(port, path), additional_headers=headers, open_timeout=OPEN_TIMEOUT)
        response = refused.value.response
        return response.status_code, json.loads(response.body)

    got_status, body = yield deferToThread(client)
    assert got_status == status and body["error"] == error
    assert upstream.handshakes == []


@pytest_twisted.inlineCallbacks
def test_authenticated_and_rate_limited_upgrades(reactor, gateways, upstream):
    """With the key the upgrade passes; the second upgrade over a 1/min limit is 429."""
    port, _ = gateways.gateway(config(), up=upstream.port)

    def client() -> Any:
        with connect(url(port, "/private"), additional_headers={"Authorization": f"Bearer {token()}"}, open_timeout=OPEN_TIMEOUT) as ws:
            ws.send("authed")
            authed = ws.recv(timeout=5)
        with connect(url(port, "/limited"), open_timeout=OPEN_TIMEOUT) as ws:
            ws.send("first")
            ws.recv(timeout=5)
        with pytest.raises(InvalidStatus) as refused:
            connect(url(port, "/limited"), open_timeout=OPEN_TIMEOUT)
        return authed, refused.value.response.status_code, json.loads(refused.value.response.body)["error"]

    assert (yield deferToThread(client)) == ("authed", 429, "rate_limited")
    assert len(upstream.handshakes) == 2


# -- raw clients, for what a library would hide ---------------------------------

HANDSHAKE = (
    b"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def raw_handshake(port: int, path: str = "/chat") -> socket.socket:
    """A connected socket past its 101 (no extension negotiated: frames are plain)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(HANDSHAKE.replace(b"{path}", path.encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    import os
    import struct

    key = os.urandom(4)
    head = bytes(((0x80 if fin else 0) | opcode,))
    n = len(payload)
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0x80 | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((0x80 | 127,)) + struct.pack("!Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> Any:
    """(opcode, payload) of the next server frame."""
    import struct

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError(data)
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", exactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", exactly(8))[0]
    return first & 0x0F, exactly(length)


def closed_promptly(sock: socket.socket, within: float = 2.0) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return True


@pytest_twisted.inlineCallbacks
def test_engine_twisted_answers_an_upgrade_with_501(reactor, twisted_gateways, upstream):
    """twisted.web cannot hand a connection over: a clear JSON 501, and the upstream never sees it."""
    port, _ = twisted_gateways.gateway(config(), up=upstream.port)
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    answer = yield deferToThread(http_request, port, "GET", "/chat", headers)
    assert answer.status == 501
    assert answer.json()["error"] == "websocket_unsupported"
    assert upstream.handshakes == []


@pytest_twisted.inlineCallbacks
def test_max_connections_caps_open_websockets(reactor, gateways, upstream):
    """The route's cap (2) refuses a third with 503 websocket_limit; a slot comes back when one closes."""
    port, generation = gateways.gateway(config("websocket: {max_connections: 5}\n").replace(
        "{name: chat, path: /chat, upstream: chat}", "{name: chat, path: /chat, upstream: chat, websocket: {max_connections: 2}}"
    ), up=upstream.port)

    def client() -> Any:
        first = connect(url(port), open_timeout=OPEN_TIMEOUT).__enter__()
        second = connect(url(port), open_timeout=OPEN_TIMEOUT).__enter__()
        with pytest.raises(InvalidStatus) as refused:
            connect(url(port), open_timeout=OPEN_TIMEOUT)
        response = refused.value.response
        first.close()
        time.sleep(0.2)
        with connect(url(port), open_timeout=OPEN_TIMEOUT) as third:
            third.send("again")
            again = third.recv(timeout=5)
        second.close()
        return response.status_code, json.loads(response.body)["error"], response.headers.get("Retry-After"), again

    status, error, retry_after, again = yield deferToThread(client)
    assert (status, error, retry_after, again) == (503, "websocket_limit", "1", "again")
    assert len(upstream.handshakes) == 3
    hub = generation.ops.websockets
    for _ in range(100):
        if not hub.open:
            break
        yield settle(reactor)
    assert hub.total_reserved == 0 and hub.open == {}


@pytest_twisted.inlineCallbacks
def test_idle_timeout_closes_both_sides_with_1001(reactor, gateways, upstream):
    port, _ = gateways.gateway(config("websocket: {idle_timeout: 300ms}\n"), up=upstream.port)

    def client() -> Any:
        with connect(url(port), open_timeout=OPEN_TIMEOUT) as ws:
            ws.send("one")
            ws.recv(timeout=5)
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            return closed.value.rcvd.code, closed.value.rcvd.reason, time.monotonic() - started

    code, reason, waited = yield deferToThread(client)
    assert (code, reason) == (1001, "idle timeout")
    assert 0.2 < waited < 2
    for _ in range(100):
        if upstream.closes:
            break
        yield settle(reactor)
    assert upstream.closes == [(1001, "idle timeout")]


@pytest_twisted.inlineCallbacks
def test_a_routes_own_idle_timeout_and_message_size_replace_the_top_levels(reactor, gateways, upstream):
    """Top level: 10 minutes, no size limit; the route `short`: 300 ms and 1 KiB, enforced on its connections only."""
    port, _ = gateways.gateway(config("websocket: {idle_timeout: 10m}\n").replace(
        "  - {name: chat, path: /chat, upstream: chat}",
        "  - {name: chat, path: /chat, upstream: chat}\n"
        "  - {name: short, path: /short, upstream: chat, websocket: {idle_timeout: 300ms, max_message_size: 1KiB}}",
    ), up=upstream.port)

    def client() -> Any:
        with connect(url(port), open_timeout=OPEN_TIMEOUT) as long_lived, connect(url(port, "/short"), open_timeout=OPEN_TIMEOUT) as short:
            long_lived.send("x" * 4096)  # no limit on this route
            big = long_lived.recv(timeout=5)
            short.send("one")
            short.recv(timeout=5)
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                short.recv(timeout=5)
            waited = time.monotonic() - started
            long_lived.send("still open")
            alive = long_lived.recv(timeout=5)
        sock = raw_handshake(port, "/short")
        sock.sendall(masked_frame(0x1, b"y" * 2048))
        too_big = read_frame(sock)
        sock.close()
        return len(big), closed.value.rcvd.code, closed.value.rcvd.reason, waited, alive, too_big

    size, code, reason, waited, alive, (opcode, payload) = yield deferToThread(client)
    assert (size, code, reason, alive) == (4096, 1001, "idle timeout", "still open")
    assert 0.2 < waited < 2
    assert opcode == 0x8 and payload == b"\x03\xf1message too big"


@pytest_twisted.inlineCallbacks
def test_max_message_size_refuses_a_bigger_message_with_1009(reactor, gateways, upstream):
    """Up to the limit passes; a bigger message (fragments together) is never forwarded: 1009 to its sender, 1001 upstream."""
    port, _ = gateways.gateway(config("websocket: {max_message_size: 1KiB}\n"), up=upstream.port)

    def client() -> Any:
        sock = raw_handshake(port)
        sock.sendall(masked_frame(0x1, b"a" * 1024))
        echoed = read_frame(sock)
        sock.sendall(masked_frame(0x1, b"b" * 600, fin=False) + masked_frame(0x0, b"c" * 600))
        closing = read_frame(sock)
        return echoed, closing, closed_promptly(sock)

    echoed, (opcode, payload), closed = yield deferToThread(client)
    assert echoed == (0x1, b"a" * 1024)
    assert opcode == 0x8 and payload[:2] == b"\x03\xf1" and payload[2:] == b"message too big"  # 1009
    assert closed
    for _ in range(100):
        if upstream.closes:
            break
        yield settle(reactor)
    assert upstream.closes == [(1001, "message too big")]
    assert all(b"b" * 600 not in bytes(str(h), "latin-1") for h in upstream.handshakes)


@pytest_twisted.inlineCallbacks
def test_a_reset_on_either_side_closes_the_other_promptly(reactor, gateways):
    import struct

    def reset_after_first(connection: Any) -> None:
        # The library's reader thread sits in recv() on this socket, and Linux
        # frees a socket (sending the RST) only once no syscall holds it: a plain
        # close() resets only when the reader happens to be between two recv()
        # calls (usually so under CPython's GIL, rarely on PyPy).  Close our
        # descriptor first (the library can then neither read nor send a FIN),
        # then wake the reader through a twin of it.
        connection.recv(timeout=5)
        connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        twin = connection.socket.dup()
        connection.socket.close()
        twin.shutdown(socket.SHUT_RD)
        twin.close()

    resetting = WebSocketServer(handler=reset_after_first)
    echo = WebSocketServer()
    try:
        port, _ = gateways.gateway(config().replace(
            "  - {name: chat, path: /chat, upstream: chat}",
            "  - {name: chat, path: /chat, upstream: chat}\n  - {name: reset, path: /reset, upstream: resetting}",
        ).replace("upstreams:\n", "upstreams:\n  resetting: {targets: [{url: \"http://127.0.0.1:{resetting}\"}]}\n"),
            up=echo.port, resetting=resetting.port)

        def upstream_resets() -> bool:
            sock = raw_handshake(port, "/reset")
            sock.sendall(masked_frame(0x1, b"go"))
            return closed_promptly(sock)

        def client_resets() -> None:
            sock = raw_handshake(port)
            sock.sendall(masked_frame(0x1, b"ping"))
            assert read_frame(sock) == (0x1, b"ping")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

        assert (yield deferToThread(upstream_resets))
        yield deferToThread(client_resets)
        started = time.monotonic()
        while not echo.closes and time.monotonic() - started < 2:
            yield settle(reactor)
        assert echo.closes and echo.closes[0][0] == 1006  # no close frame: the connection was cut
    finally:
        resetting.close()
        echo.close()


@pytest_twisted.inlineCallbacks
def test_a_slow_reader_slows_the_writer(reactor, gateways):
    """The upstream pushes 64 MiB at a client that reads nothing: the gateway relays only what the sockets hold."""
    total = 64 * 1024 * 1024
    chunk = b"x" * (256 * 1024)

    def flood(connection: Any) -> None:
        sent = 0
        while sent < total:
            connection.send(chunk)
            sent += len(chunk)
        connection.recv(timeout=30)

    server = WebSocketServer(handler=flood, compression=None)
    try:
        port, generation = gateways.gateway(config(), up=server.port)
        sock = yield deferToThread(raw_handshake, port)
        yield deferToThread(time.sleep, 1.5)
        (tunnel,) = list(generation.ops.websockets.open)
        held = tunnel.bytes_down
        queued = len(tunnel.client.transport.dataBuffer) + sum(map(len, tunnel.client.transport._tempDataBuffer))
        assert held < 32 * 1024 * 1024, held  # kernel buffers and one chunk, not the flood
        assert queued < 4 * 1024 * 1024, queued

        def drain() -> int:
            got = 0
            while got < total:
                opcode, payload = read_frame(sock)
                assert opcode == 0x2
                got += len(payload)
            sock.sendall(masked_frame(0x8, b"\x03\xe8"))
            return got

        assert (yield deferToThread(drain)) == total
        sock.close()
        for _ in range(100):  # the tunnel ends before the server (whose close blocks the reactor) stops
            if not generation.ops.websockets.open:
                break
            yield settle(reactor)
    finally:
        server.close()


@pytest_twisted.inlineCallbacks
def test_an_upstream_that_does_not_read_slows_the_client(reactor, gateways):
    """The other direction: a client pushes 64 MiB at an upstream that reads nothing; the client is held, then all arrives."""
    import base64
    import hashlib

    total = 64 * 1024 * 1024
    received = {"bytes": 0}

    def answer(connection: Any) -> None:
        key = [line.split(b":", 1)[1].strip() for line in connection.buffer.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        connection.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )

        def count(data: bytes) -> None:
            received["bytes"] += len(data)

        connection.dataReceived = count
        connection.transport.pauseProducing()  # read nothing until the test says so

    up, upstreams = gateways.raw_upstream(answer)
    port, generation = gateways.gateway(config(), up=up)
    data = masked_frame(0x2, b"u" * (256 * 1024)) * (total // (256 * 1024))
    sock = yield deferToThread(raw_handshake, port)

    def flood(seconds: float) -> int:
        view = memoryview(data)
        sent = 0
        sock.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and sent < len(data):
            try:
                sent += sock.send(view[sent : sent + 1024 * 1024])
            except socket.timeout:
                pass
        return sent

    sent = yield deferToThread(flood, 1.5)
    (tunnel,) = list(generation.ops.websockets.open)
    queued = len(tunnel.upstream.transport.dataBuffer) + sum(map(len, tunnel.upstream.transport._tempDataBuffer))
    assert sent < 32 * 1024 * 1024, sent  # socket buffers and a little, not the flood
    assert queued < 4 * 1024 * 1024, queued
    (upstream,) = upstreams.connections
    upstream.transport.resumeProducing()
    sock.settimeout(30)
    yield deferToThread(sock.sendall, data[sent:])
    for _ in range(400):
        if received["bytes"] >= len(data):
            break
        yield settle(reactor)
    assert received["bytes"] == len(data)  # every byte, once the upstream reads
    sock.close()


@pytest_twisted.inlineCallbacks
def test_metrics_and_one_access_line_when_the_connection_ends(reactor, gateways, upstream, tmp_path):
    from prometheus_client.exposition import generate_latest

    from twistgate.ops.accesslog import access_fields

    log = tmp_path / "access.log"
    port, generation = gateways.gateway(config(f'access_log: {{path: "{log}", flush_interval: 0s}}\n'), up=upstream.port)
    yield generation.start()
    records: List[Any] = []
    generation.observers.append(records.append)

    def client() -> None:
        with connect(url(port), open_timeout=OPEN_TIMEOUT, compression=None) as ws:
            ws.send("x" * 100)
            ws.recv(timeout=5)
            text = generate_latest(generation.ops.registry).decode()
            assert 'twistgate_websocket_connections_open{route="chat"} 1.0' in text
            assert records == []  # no line while the connection is open
            time.sleep(0.3)
            ws.close(4000, "done")

    yield deferToThread(client)
    for _ in range(100):
        if records:
            break
        yield settle(reactor)
    (record,) = records
    fields = access_fields(record)
    assert fields["status"] == 101 and fields["route"] == "chat"
    assert fields["websocket_close_code"] == 4000 and fields["websocket_closed_by"] == "client"
    assert fields["duration_ms"] >= 300
    assert fields["bytes_in"] >= 100 + 6 and fields["bytes_out"] >= 100 + 2
    text = generate_latest(generation.ops.registry).decode()
    assert 'twistgate_websocket_connections_open{route="chat"} 0.0' in text
    assert 'twistgate_websocket_connections_total{route="chat"} 1.0' in text
    assert 'twistgate_websocket_closes_total{closed_by="client",code="4xxx",route="chat"} 1.0' in text
    assert f'twistgate_websocket_bytes_total{{direction="client_to_upstream",route="chat"}} {float(record.bytes_in)}' in text
    assert f'twistgate_websocket_bytes_total{{direction="upstream_to_client",route="chat"}} {float(record.bytes_out)}' in text
    # The line the access log file got: one, written when the connection ended, with its close fields.
    yield generation.stop()
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert (line["status"], line["route"], line["websocket_close_code"], line["websocket_closed_by"]) == (101, "chat", 4000, "client")
    assert line["duration_ms"] >= 300 and (line["bytes_in"], line["bytes_out"]) == (record.bytes_in, record.bytes_out)
    # Latency figures count the handshake, not the connection's lifetime.
    assert 'twistgate_request_duration_seconds_bucket{le="0.25",route="chat"} 1.0' in text


LIVE = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: integration-token}
limits: {drain_timeout: 1s}
websocket: {drain_timeout: DRAIN}
upstreams:
  chat: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: chat, path: /chat, upstream: chat, headers: {response: {set: {X-Generation: "GEN"}}}}
"""


@pytest_twisted.inlineCallbacks
def test_a_reload_does_not_cut_open_websockets_until_the_drain_timeout(reactor, tmp_path, upstream):
    """The open connection lives on its generation after a reload, then gets 1001 at websocket.drain_timeout."""
    from tests.ops.live import LiveGateway

    path = tmp_path / "gw.yaml"
    gateway = LiveGateway(reactor, path, LIVE.replace("DRAIN", "1500ms").replace("GEN", "1"), up=upstream.port)
    yield gateway.start()
    try:
        ws = yield deferToThread(lambda: connect(url(gateway.port), open_timeout=OPEN_TIMEOUT).__enter__())
        assert ws.response.headers["X-Generation"] == "1"
        gateway.write(LIVE.replace("DRAIN", "1500ms").replace("GEN", "2"), up=upstream.port)
        result = yield gateway.service.reload()
        assert result["ok"], result
        started = time.monotonic()

        def after_reload() -> Any:
            ws.send("still here")
            echoed = ws.recv(timeout=5)
            with connect(url(gateway.port), open_timeout=OPEN_TIMEOUT) as fresh:
                generation = fresh.response.headers["X-Generation"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            return echoed, generation, closed.value.rcvd.code, closed.value.rcvd.reason, time.monotonic() - started

        echoed, generation, code, reason, waited = yield deferToThread(after_reload)
        assert (echoed, generation, code, reason) == ("still here", "2", 1001, "going away")
        assert 1.2 < waited < 4
        for _ in range(100):
            if len(gateway.service.ops.generations) == 1:
                break
            yield settle(reactor)
        assert len(gateway.service.ops.generations) == 1  # the old generation retired once its WebSocket ended
    finally:
        yield gateway.stop()


@pytest_twisted.inlineCallbacks
def test_a_graceful_stop_waits_for_open_websockets_then_says_going_away(reactor, tmp_path, upstream):
    from tests.ops.live import LiveGateway

    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", LIVE.replace("DRAIN", "10m").replace("GEN", "1"), up=upstream.port)
    yield gateway.start()
    ws = yield deferToThread(lambda: connect(url(gateway.port), open_timeout=OPEN_TIMEOUT).__enter__())
    started = time.monotonic()
    stopped = gateway.stop()

    def during_stop() -> Any:
        ws.send("draining")
        echoed = ws.recv(timeout=5)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        return echoed, closed.value.rcvd.code, time.monotonic() - started

    echoed, code, waited = yield deferToThread(during_stop)
    yield stopped
    assert (echoed, code) == ("draining", 1001)
    assert 0.8 < waited < 3


@pytest_twisted.inlineCallbacks
def test_wss_over_a_tls_listener(reactor, gateways, upstream, pki):
    """
    The same relay over TLS: the engine hands the TLS connection over, frames
    flow both ways.  The client is websockets' asyncio one, which keeps the
    connection on one thread; its sync client reads and writes one `ssl`
    connection from two threads, which lost ~1 in 1,000 upgrade requests on
    PyPy (see `tests.tls_threads`): the test then timed out waiting for a 101.
    """
    from websockets.asyncio.client import connect as connect_async

    from tests.tls.harness import client_context

    tls_config = config().replace(
        '  - {name: public, endpoint: "tcp:0"}',
        f'  - {{name: public, endpoint: "tcp:0:interface=127.0.0.1", tls: {{certificate: "{pki.server.certificate}", private_key: "{pki.server.key}"}}}}',
    )
    port, _ = gateways.gateway_listener(tls_config, up=upstream.port)
    context = client_context(pki)
    threads = tls_threads(context)

    async def client() -> Any:
        uri = f"wss://localhost:{port}/chat"
        async with connect_async(uri, ssl=context, open_timeout=OPEN_TIMEOUT, ping_interval=None) as ws:
            await ws.send("over tls")
            small = await asyncio.wait_for(ws.recv(), 5)
            await ws.send(b"\x01" * 200_000)
            big = await asyncio.wait_for(ws.recv(), 5)
            await ws.close(4003, "tls bye")
            return small, len(big)

    assert (yield deferToThread(lambda: asyncio.run(client()))) == ("over tls", 200_000)
    for _ in range(100):
        if upstream.closes:
            break
        yield settle(reactor)
    assert upstream.closes == [(4003, "tls bye")]
    assert len(threads) == 1, "one TLS connection read and written from several threads"


@pytest_twisted.inlineCallbacks
def test_frames_sent_with_the_101_and_right_after_the_handshake_are_not_lost(reactor, gateways):
    """An upstream whose first frame shares the 101's TCP segment; a client whose first frame follows its handshake at once."""
    import base64
    import hashlib

    def answer(connection: Any) -> None:
        key = [line.split(b":", 1)[1].strip() for line in connection.buffer.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        connection.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept
            + b"\r\n\r\n\x81\x07welcome"
        )
        early = connection.buffer.split(b"\r\n\r\n", 1)[1]  # the client's frame, if it came with the head

        def more(data: bytes) -> None:
            received.append(data)
            connection.transport.write(b"\x81\x03got")

        connection.dataReceived = more
        if early:
            more(early)

    received: List[bytes] = []
    up, _ = gateways.raw_upstream(answer)
    port, _ = gateways.gateway(config(), up=up)
    early_frame = masked_frame(0x1, b"early")

    def client() -> Any:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(HANDSHAKE.replace(b"{path}", b"/chat") + early_frame)
        data = b""
        while b"welcome" not in data or not data.endswith(b"got"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        return data

    data = yield deferToThread(client)
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert frames == b"\x81\x07welcome\x81\x03got"
    assert b"".join(received) == early_frame
