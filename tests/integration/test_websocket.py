"""
WebSocket through the gateway over real sockets, with the `websockets`
library on both ends: the handshake is an ordinary request (routes,
auth, rate limits refuse it with their JSON errors and the upstream never
hears of it), then both directions are relayed byte for byte: messages,
subprotocol and extension negotiation, close codes and reasons, resets,
back-pressure, caps, idle timeout, message size, metrics and the access
line.  ``engine: twisted`` answers an upgrade with 501.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.integration.conftest import Servers, raw_exchange
from tests.ws_servers import WebSocketServer

pytestmark = pytest.mark.integration

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
"""


def config(extra: str = "") -> str:
    return CONFIG + extra


@pytest.fixture
def gateways(reactor: Any):
    s = Servers(reactor, "httptools")
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
        with connect(url(port), subprotocols=["chat.v1"], open_timeout=5) as ws:
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
            with connect(url(port), open_timeout=5) as ws:
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
            with connect(url(port), open_timeout=5) as ws:
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
    ],
)
@pytest_twisted.inlineCallbacks
def test_refused_upgrades_get_the_json_error_and_never_reach_the_upstream(reactor, gateways, upstream, path, headers, status, error):
    port, _ = gateways.gateway(config(), up=upstream.port)

    def client() -> Any:
        with pytest.raises(InvalidStatus) as refused:
            connect(url(port, path), additional_headers=headers, open_timeout=5)
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
        with connect(url(port, "/private"), additional_headers={"Authorization": f"Bearer {token()}"}, open_timeout=5) as ws:
            ws.send("authed")
            authed = ws.recv(timeout=5)
        with connect(url(port, "/limited"), open_timeout=5) as ws:
            ws.send("first")
            ws.recv(timeout=5)
        with pytest.raises(InvalidStatus) as refused:
            connect(url(port, "/limited"), open_timeout=5)
        return authed, refused.value.response.status_code, json.loads(refused.value.response.body)["error"]

    assert (yield deferToThread(client)) == ("authed", 429, "rate_limited")
    assert len(upstream.handshakes) == 2
