"""
1xx interim answers over real sockets: ``Expect: 100-continue`` answered
once the gateway decides to forward (never a deadlock), a request refused
by a policy answered with its final error without its body being read;
an HTTP/1.1 upstream's ``103 Early Hints`` reaching HTTP/1.1 and HTTP/2
clients before the final answer, Link fields kept; a response with an
unknown transfer coding and no length read until the upstream closes
(RFC 9112 §6.3) instead of a 502.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.conftest import RecordingUpstream, raw_exchange

pytestmark = pytest.mark.integration

CONFIG = """
listeners:
  - {name: public, endpoint: "tcp:0", h2c: true}
upstreams:
  app:
    targets: [{url: "http://127.0.0.1:{up}"}]
auth:
  tokens: {type: jwt, algorithms: [HS256], secret: interim-test-secret-of-32-bytes-or-more}
routes:
  - {name: open, path: "/open/*", upstream: app}
  - {name: private, path: "/private/*", upstream: app, auth: [tokens]}
"""


@pytest.fixture
def httptools_servers(reactor: Any):
    from tests.integration.conftest import Servers

    s = Servers(reactor, "httptools")
    yield s
    s.close()


def expect_then_wait(port: int, path: str) -> Any:
    """
    Send a head with Expect and wait (up to 3 s) for an answer before
    sending any body byte; ``(first read, the rest, closed by the server)``.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        sock.settimeout(3)
        first = sock.recv(65536)
        if first.startswith(b"HTTP/1.1 100 "):
            sock.sendall(b"hello")
        rest = b""
        sock.settimeout(1)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return first, rest, True
                rest += chunk
        except socket.timeout:
            return first, rest, False


@pytest_twisted.inlineCallbacks
def test_100_continue_is_sent_once_the_gateway_forwards(servers):
    upstream = RecordingUpstream(lambda r: (200, [], b"got"))
    port, _ = servers.gateway(CONFIG, up=servers.upstream(upstream))
    first, rest, _ = yield deferToThread(expect_then_wait, port, "/open/x")
    assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert (first + rest).split(b"100 Continue\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 200 ")
    assert upstream.requests[0].body == b"hello"
    assert upstream.requests[0].header("expect") is None


@pytest_twisted.inlineCallbacks
def test_a_refused_request_gets_its_error_without_a_100_and_without_its_body_read(httptools_servers):
    """(httptools engine: twisted.web answers 100 Continue itself before the gateway sees the request.)"""
    upstream = RecordingUpstream(lambda r: (200, [], b"got"))
    port, _ = httptools_servers.gateway(CONFIG, up=httptools_servers.upstream(upstream))
    first, rest, closed = yield deferToThread(expect_then_wait, port, "/private/x")
    assert first.startswith(b"HTTP/1.1 401 "), first
    assert b"100 Continue" not in first + rest
    assert b"Connection: close" in first and closed  # the unread body is never taken for a next request
    assert upstream.requests == []


def early_hints(connection: Any) -> None:
    connection.transport.write(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nLink: </app.js>; rel=preload; as=script\r\n\r\n"
    )
    connection.factory.reactor.callLater(
        0.05,
        connection.transport.write,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfinal",
    )


@pytest_twisted.inlineCallbacks
def test_103_from_an_http1_upstream_reaches_an_http1_client_first(reactor, servers):
    up, factory = servers.raw_upstream(early_hints)
    factory.reactor = reactor
    port, _ = servers.gateway(CONFIG, up=up)
    raw = yield deferToThread(raw_exchange, port, b"GET /open/page HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    if servers.engine == "twisted":
        # twisted.web cannot send 1xx answers of its own choosing: the hints are dropped, the answer comes.
        assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"final")
        return
    hints, _, final = raw.partition(b"\r\n\r\n")
    assert hints == (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nLink: </app.js>; rel=preload; as=script"
    )
    assert final.startswith(b"HTTP/1.1 200 ") and final.endswith(b"final")


@pytest_twisted.inlineCallbacks
def test_103_from_an_http1_upstream_reaches_an_http2_client_first(reactor, servers):
    from tests.h2_helpers import H2Client

    up, factory = servers.raw_upstream(early_hints)
    factory.reactor = reactor
    port, _ = servers.gateway_listener(CONFIG, up=up)

    def call() -> Any:
        with H2Client(port) as client:
            return client.request("GET", "/open/page")

    answer = yield deferToThread(call)
    if servers.engine == "twisted":
        # Twisted's client (the forwarded hop of engine: twisted) never reports 1xx answers.
        assert answer.interim == [] and answer.status == 200
        return
    assert [dict(h)[b":status"] for h in answer.interim] == [b"103"]
    links = [v for k, v in answer.interim[0] if k == b"link"]
    assert links == [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
    assert answer.status == 200 and answer.body == b"final"


def unknown_coding(connection: Any) -> None:
    connection.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: x-custom\r\n\r\nfirst part, ")
    connection.factory.reactor.callLater(0.05, connection.transport.write, b"second part")
    connection.factory.reactor.callLater(0.1, connection.transport.loseConnection)


@pytest_twisted.inlineCallbacks
def test_an_unknown_transfer_coding_is_read_until_the_upstream_closes(reactor, servers):
    up, factory = servers.raw_upstream(unknown_coding)
    factory.reactor = reactor
    port, _ = servers.gateway(CONFIG, up=up)
    raw = yield deferToThread(raw_exchange, port, b"GET /open/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    if servers.engine == "twisted":
        # Twisted's client refuses a transfer coding it does not know (engine: twisted, kept one release).
        assert head.startswith(b"HTTP/1.1 502 "), head
        return
    assert head.startswith(b"HTTP/1.1 200 "), head
    # Not decoded, so still announced (RFC 9112 §6.1), then framed for this hop.
    assert b"\r\nTransfer-Encoding: x-custom, chunked\r\n" in head + b"\r\n"
    assert body == b"c\r\nfirst part, \r\nb\r\nsecond part\r\n0\r\n\r\n"
