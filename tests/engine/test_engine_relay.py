"""Server and pool wired together in memory, as the gateway will: 100-continue both ways and 103 relayed."""

from __future__ import annotations

from typing import Any, List

from twisted.internet.task import Clock

from tests.engine.engine_fakes import FakeEndpoint, Served
from twistgate.engine.pool import UpstreamPool
from twistgate.headers import Headers


class Relay:
    def __init__(self, request: Any) -> None:
        self.request = request

    def makeConnection(self, producer: Any) -> None:
        self.request.register_producer(producer)

    def dataReceived(self, data: bytes) -> None:
        self.request.write(data)

    def connectionLost(self, reason: Any) -> None:
        self.request.finish()


def proxy(pool: UpstreamPool, endpoint: FakeEndpoint, forwarded: List[Any]) -> Any:
    def handle(request: Any) -> None:
        headers = Headers({b"Host": [b"up"]})
        if request.expects_continue:
            headers.raw[b"Expect"] = [b"100-continue"]  # let the upstream decide
        d = pool.request("k", endpoint, request.method, request.target, headers, request.body, on_interim=request.send_interim)
        forwarded.append(d)

        def answer(response: Any) -> None:
            request.write_head(response.code, response.phrase, response.headers)
            response.deliverBody(Relay(request))

        d.addCallback(answer)

    return handle


def setup() -> Any:
    pool = UpstreamPool(Clock())
    endpoint = FakeEndpoint()
    forwarded: List[Any] = []
    served = Served(proxy(pool, endpoint, forwarded))
    return served, endpoint


def test_100_continue_comes_from_the_upstream_and_the_body_follows():
    served, endpoint = setup()
    served.send(b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    upstream, up_transport = endpoint.connections[0]
    assert up_transport.value() == b"PUT /u HTTP/1.1\r\nHost: up\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    assert served.output() == b""  # the client waits
    upstream.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert served.output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    served.send(b"hello")
    assert up_transport.value().endswith(b"\r\n\r\nhello")
    upstream.dataReceived(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    replies = served.responses()
    assert [r.status for r in replies] == [100, 201] and replies[1].body == b"ok"
    assert not served.closed


def test_an_upstream_refusal_without_100_leaves_the_body_unread_and_closes():
    served, endpoint = setup()
    served.send(b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    upstream, _ = endpoint.connections[0]
    upstream.dataReceived(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
    reply = served.responses()[0]
    assert reply.status == 417 and reply.header(b"Connection") == b"close"
    assert served.closed


def test_103_early_hints_reach_the_client_before_the_answer():
    served, endpoint = setup()
    served.send(b"GET /page HTTP/1.1\r\nHost: a\r\n\r\n")
    upstream, _ = endpoint.connections[0]
    upstream.dataReceived(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
    assert served.output() == b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage")
    assert [r.status for r in served.responses()] == [103, 200]
