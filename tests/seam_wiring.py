"""
The gateway wired in memory on the HTTP/1.1 engine on both hops, as under
twistd, for tests of the seam between the exchange and the upstream call:
one client connection, the pooled upstream connections, and every
finished exchange's record.
"""

from __future__ import annotations

from typing import Any, List, Sequence

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twistgate.config import load_text
from twistgate.generation import Generation
from twistgate.listeners import site_for
from twistgate.resource import GatewayResource

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
upstreams:
  app: {targets: [{url: "http://127.0.0.1:9"}]%s}
routes:
  - {name: all, path: "/*", upstream: app%s}
"""


class Wired:
    """The gateway, one client connection, and the upstream connections the pool made."""

    def __init__(self, upstream: str = "", route: str = "", sections: str = "", plugin_registry: Any = None) -> None:
        """`sections`: more top-level configuration (``auth:``, ``plugins:``...), as YAML."""
        self.clock = MemoryReactorClock()
        config = load_text(CONFIG % (upstream, route) + sections)
        self.generation = generation = Generation(config, self.clock, plugin_registry=plugin_registry)
        self.records: List[Any] = []
        generation.observers.append(self.records.append)
        factory = site_for(GatewayResource(generation), generation.config.limits, self.clock, listener="public")
        self.client = factory.buildProtocol(None)
        self.client_wire = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4711))
        self.client.makeConnection(self.client_wire)
        self.upstreams: List[Any] = []  # (protocol, wire)
        self.sent = b""  # what the last request `send` forwarded put on its upstream connection

    def send(self, request: bytes) -> Any:
        """A request from the client; the upstream connection it went out on (made now if new)."""
        self.client.dataReceived(request)
        for host, port, pool_factory, _, _ in self.clock.tcpClients[len(self.upstreams) :]:
            protocol = pool_factory.buildProtocol(IPv4Address("TCP", host, port))
            wire = StringTransport()
            protocol.makeConnection(wire)
            self.upstreams.append((protocol, wire))
        for protocol, wire in self.upstreams:
            if wire.value():
                self.sent = wire.value()
                wire.clear()
                return protocol
        return None

    def answer(self, upstream: Any, reads: Sequence[bytes]) -> bytes:
        """The upstream's answer in these reads; what the client received."""
        for data in reads:
            upstream.dataReceived(data)
        out = self.client_wire.value()
        self.client_wire.clear()
        return out

    @property
    def target(self) -> Any:
        return self.generation.upstreams["app"].targets[0]
