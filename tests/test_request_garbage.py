"""
A forwarded request leaves no reference cycle behind: refcounting frees all
of it, and the cyclic collector (whose passes cost the gateway several
microseconds per request when it has work) finds nothing of it.

The whole gateway runs on the HTTP/1.1 engine on both hops, as under twistd,
with the sockets replaced by in-memory transports.
"""

from __future__ import annotations

import gc
from typing import Any, List

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twistgate.config import load_text
from twistgate.generation import Generation
from twistgate.listeners import site_for
from twistgate.resource import GatewayResource

import platform as _platform
import pytest as _pytest

pytestmark = _pytest.mark.skipif(_platform.python_implementation() != "CPython", reason="reference cycles are found with CPython's gc.set_debug")

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
upstreams:
  app: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - {name: all, path: "/*", upstream: app}
"""

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
PER_REQUEST = {
    "Exchange", "ServerRequest", "ProxyRequest", "ProxyResponse", "UpstreamCall", "Attempt",
    "Forwarding", "_CallbackRequest", "UpstreamResponse", "BodyRelay", "Headers",
    "ExchangeRecord", "TraceContext",
}  # fmt: skip


class _Wired:
    """The gateway with one client connection and its pooled upstream connection, in memory."""

    def __init__(self) -> None:
        self.clock = MemoryReactorClock()
        generation = Generation(load_text(CONFIG), self.clock)
        factory = site_for(GatewayResource(generation), generation.config.limits, self.clock, listener="public")
        self.client = factory.buildProtocol(None)
        self.client_wire = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4711))
        self.client.makeConnection(self.client_wire)
        self.upstream: Any = None
        self.upstream_wire = StringTransport()

    def forward(self, count: int) -> List[bytes]:
        answers = []
        for _ in range(count):
            self.client.dataReceived(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
            if self.upstream is None:  # the pool asked the reactor for its first connection
                host, port, pool_factory, _, _ = self.clock.tcpClients[-1]
                self.upstream = pool_factory.buildProtocol(IPv4Address("TCP", host, port))
                self.upstream.makeConnection(self.upstream_wire)
            assert self.upstream_wire.value().startswith(b"GET /x HTTP/1.1\r\n")
            self.upstream_wire.clear()
            self.upstream.dataReceived(ANSWER)
            answers.append(self.client_wire.value())
            self.client_wire.clear()
        return answers


def test_a_forwarded_request_leaves_no_cycle_behind():
    wired = _Wired()
    wired.forward(2)  # connections made, caches warm
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        answers = wired.forward(5)
        gc.collect()
        left = sorted({type(o).__name__ for o in gc.garbage} & PER_REQUEST)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert all(answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"hello") for answer in answers)
    assert left == []
