"""In-memory helpers for the engine's unit tests: a server on a StringTransport, a fake endpoint, a response reader."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import httptools
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from twistgate.engine import HTTP1ServerFactory, ServerLimits, ServerRequest
from twistgate.headers import Headers


class Served:
    """A server connection on a StringTransport, with the requests its handler saw."""

    def __init__(self, handler: Optional[Callable[[ServerRequest], Any]] = None, limits: Optional[ServerLimits] = None, **kw: Any) -> None:
        self.clock = Clock()
        self.requests: List[ServerRequest] = []
        self.counts: List[int] = []
        self._handler = handler

        def handle(request: ServerRequest) -> None:
            self.requests.append(request)
            if self._handler is not None:
                self._handler(request)

        self.factory = HTTP1ServerFactory(
            handle, limits=limits or ServerLimits(), clock=self.clock, on_connection=self.counts.append, **kw
        )
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4711))
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> "Served":
        self.protocol.dataReceived(data)
        return self

    def output(self) -> bytes:
        return self.transport.value()

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def responses(self) -> List["Reply"]:
        return parse_responses(self.output())


def ok(request: ServerRequest) -> None:
    """Answer 200 with the path."""
    request.respond(200, None, Headers(), request.path)


class Reply:
    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: List[Tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = False

    def header(self, name: bytes) -> Optional[bytes]:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class _Collector:
    def __init__(self) -> None:
        self.replies: List[Reply] = []
        self.parser: Any = None

    def on_headers_complete(self) -> None:
        self.replies[-1].status = self.parser.get_status_code()

    def on_message_begin(self) -> None:
        self.replies.append(Reply())

    def on_status(self, reason: bytes) -> None:
        self.replies[-1].reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.replies[-1].headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.replies[-1].body += body

    def on_message_complete(self) -> None:
        self.replies[-1].complete = True


def parse_responses(data: bytes) -> List[Reply]:
    """Every response in ``data`` (1xx included), parsed by llhttp."""
    collector = _Collector()
    parser = collector.parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass
    return collector.replies


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects each protocol to a fresh StringTransport at once."""

    def __init__(self) -> None:
        self.connections: List[Tuple[Any, StringTransport]] = []
        self.fail_with: Optional[Exception] = None

    def connect(self, factory: Any) -> Any:
        if self.fail_with is not None:
            return succeed(None).addCallback(lambda _: Failure(self.fail_with))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class BodyCollector:
    """A body protocol that records everything."""

    def __init__(self) -> None:
        self.data = b""
        self.reason: Optional[Failure] = None
        self.producer: Any = None

    def makeConnection(self, producer: Any) -> None:
        self.producer = producer

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:
        self.reason = reason
