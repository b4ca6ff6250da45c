"""
``engine: twisted`` (twisted.web's server, kept for one release) enforces
``limits.client_body_timeout`` as the httptools engine does: a body with no
byte for that long is 408 and close, a byte restarts the clock, and the
clock does not run out while the gateway itself holds the client back.
On an injected clock, over an in-memory transport.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twistgate.config.model import LimitsConfig
from twistgate.engine.twisted_web import GatewaySite

LIMITS = LimitsConfig(header_timeout=10.0, body_timeout=30.0, max_request_body=10_000_000)


class Holding:
    """A gateway that takes each request (and its streaming body) and never answers."""

    def __init__(self) -> None:
        self.downstreams: List[Any] = []

    def render(self, downstream: Any) -> None:
        self.downstreams.append(downstream)


def _connect(limits: LimitsConfig = LIMITS) -> "tuple[Any, StringTransport, Clock, Holding]":
    clock, resource = Clock(), Holding()
    site = GatewaySite(resource, limits, clock)
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock, resource


def test_a_stalled_body_gets_408_and_close():
    protocol, transport, clock, resource = _connect()
    protocol.dataReceived(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    [downstream] = resource.downstreams
    clock.advance(29)
    protocol.dataReceived(b"def")  # a byte restarts the body clock
    clock.advance(29)
    assert transport.value() == b""
    clock.advance(1.5)
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n"), transport.value()
    assert b"Connection: close" in transport.value() and b'"error":"request_timeout"' in transport.value()
    assert transport.disconnecting
    body = downstream.body
    assert body.aborted_by_client  # the upstream attempt fails as the client's doing, not the upstream's


def test_the_body_clock_does_not_run_out_while_the_gateway_holds_the_client_back():
    protocol, transport, clock, resource = _connect()
    protocol.dataReceived(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 200_000)
    [downstream] = resource.downstreams
    assert downstream.body.client_paused  # nobody consumes the body yet: back-pressure
    clock.advance(100)
    assert transport.value() == b"" and not transport.disconnecting


def test_a_complete_body_stops_the_clock():
    protocol, transport, clock, resource = _connect()
    protocol.dataReceived(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    clock.advance(100)
    assert transport.value() == b"" and not transport.disconnecting
    assert clock.getDelayedCalls() == [] or all(c.getTime() > 100 for c in clock.getDelayedCalls())
