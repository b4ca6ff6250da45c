"""On PyPy an upstream connection reads 16 KiB at a time unless a large body is on its way (in memory, either interpreter)."""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol

from tests.engine.engine_fakes import BodyCollector
from twistgate.engine import pool as pool_module
from twistgate.engine.buffered_reads import ON_PYPY
from twistgate.engine.http1_client import HTTP1ClientProtocol
from twistgate.engine.pool import UpstreamPool
from twistgate.engine.upstream_reads import (
    CLIENT_PROTOCOL, LARGE_READ, SMALL_READ, SmallReadsClientProtocol, tcp_transport,
)
from twistgate.headers import Headers
from twistgate.upstream.body import BytesBody

SMALL_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class SizedTransport(StringTransport):
    """A StringTransport with a TCP transport's ``bufferSize`` (what ``doRead`` asks for) and a socket's waiting bytes."""

    bufferSize = LARGE_READ
    protocol: Any = None
    waiting = b""

    def doRead(self) -> None:
        data, self.waiting = self.waiting[: self.bufferSize], self.waiting[self.bufferSize :]
        if data:
            self.protocol.dataReceived(data)


class Endpoint:
    def __init__(self, transport_class: Any = SizedTransport) -> None:
        self.transport_class = transport_class
        self.connections: List[Any] = []

    def connect(self, factory: Any) -> Any:
        protocol = factory.buildProtocol(None)
        transport = self.transport_class()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class Setup:
    def __init__(self, monkeypatch: Any, transport_class: Any = SizedTransport) -> None:
        monkeypatch.setattr(pool_module, "CLIENT_PROTOCOL", SmallReadsClientProtocol)  # PyPy's choice
        self.pool = UpstreamPool(Clock())
        self.endpoint = Endpoint(transport_class)

    def request(self, method: bytes = b"GET", body: Any = None) -> Any:
        responses: List[Any] = []
        self.pool.request("k", self.endpoint, method, b"/", Headers({b"Host": [b"up"]}), body).addCallback(responses.append)
        return responses

    def answer(self, data: bytes) -> None:
        self.endpoint.connections[-1][0].dataReceived(data)

    @property
    def read_size(self) -> int:
        return self.endpoint.connections[-1][1].bufferSize


def test_the_pool_builds_the_small_reads_protocol_on_pypy_only():
    assert CLIENT_PROTOCOL is (SmallReadsClientProtocol if ON_PYPY else HTTP1ClientProtocol)


def test_a_request_without_a_body_and_a_small_answer_read_16_kib_at_a_time(monkeypatch):
    s = Setup(monkeypatch)
    responses = s.request()
    assert isinstance(s.endpoint.connections[-1][0], SmallReadsClientProtocol)
    assert s.read_size == SMALL_READ
    s.answer(SMALL_ANSWER)
    assert responses[0].code == 200 and s.read_size == SMALL_READ
    assert s.pool.idle_count("k") == 1


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (SMALL_READ + 1),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",  # until the upstream closes
    ],
)
def test_a_large_or_streamed_body_is_read_64_kib_at_a_time_then_the_next_request_reads_small(monkeypatch, head):
    s = Setup(monkeypatch)
    responses = s.request()
    s.answer(head)
    assert responses and s.read_size == LARGE_READ
    if b"chunked" in head:
        responses[0].deliverBody(BodyCollector())
        s.answer(b"0\r\n\r\n")
        s.request()
        assert len(s.endpoint.connections) == 1 and s.read_size == SMALL_READ


def test_a_full_small_read_with_a_large_bodys_head_reads_the_rest_in_the_same_pass(monkeypatch):
    """Two pieces from two passes, the first shorter than loopback's segment, would wait 40 ms on the client's ACK."""
    s = Setup(monkeypatch)
    responses = s.request()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n"
    answer = head + b"x" * 70000
    s.endpoint.connections[-1][1].waiting = answer[SMALL_READ:]  # what the socket holds after this read
    s.answer(answer[:SMALL_READ])  # a full small read
    body = BodyCollector()
    responses[0].deliverBody(body)
    assert body.data == b"x" * 70000 and s.read_size == LARGE_READ
    assert s.pool.idle_count("k") == 1


def test_a_short_read_with_a_large_bodys_head_leaves_the_rest_to_the_reactor(monkeypatch):
    s = Setup(monkeypatch)
    responses = s.request()
    s.endpoint.connections[-1][1].waiting = b"x" * 10  # would be read if the connection asked
    s.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"x" * 100)
    body = BodyCollector()
    responses[0].deliverBody(body)
    assert body.data == b"x" * 100 and s.read_size == LARGE_READ


def test_a_body_up_to_the_small_size_keeps_small_reads(monkeypatch):
    s = Setup(monkeypatch)
    responses = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SMALL_READ)
    assert responses and s.read_size == SMALL_READ


def test_a_request_body_is_sent_with_twisteds_pause_threshold(monkeypatch):
    s = Setup(monkeypatch)
    s.request(b"POST", BytesBody(b"data"))
    assert s.read_size == LARGE_READ  # bufferSize is where the transport pauses the body's producer too
    s.answer(SMALL_ANSWER)
    s.request()
    assert len(s.endpoint.connections) == 1 and s.read_size == SMALL_READ


def test_a_tunnel_after_101_reads_64_kib_at_a_time(monkeypatch):
    s = Setup(monkeypatch)
    responses = s.request()
    s.answer(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert s.read_size == SMALL_READ
    relay = BodyCollector()
    responses[0].detach(relay)
    assert s.read_size == LARGE_READ
    s.answer(b"frame")
    assert relay.data == b"frame"


def test_a_transport_without_a_read_size_is_left_alone(monkeypatch):
    s = Setup(monkeypatch, StringTransport)
    responses = s.request()
    s.answer(SMALL_ANSWER)
    assert responses[0].code == 200
    assert not hasattr(s.endpoint.connections[-1][1], "bufferSize")


def test_a_tls_layer_is_left_as_it_is():
    tcp_like = SizedTransport()
    tls = TLSMemoryBIOProtocol(None, HTTP1ClientProtocol(None, "k"))  # type: ignore[arg-type]
    tls.transport = tcp_like
    assert tcp_transport(tls) is None
    assert tcp_transport(tcp_like) is tcp_like
    assert tcp_transport(StringTransport()) is None
