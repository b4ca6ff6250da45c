"""
Real sockets on 127.0.0.1: upstream servers, the gateway, blocking clients.

Clients run in threads (`deferToThread`) with plain sockets, so what the
tests see is exactly what crossed the wire; the gateway and the upstreams run
on the real reactor driven by pytest-twisted.
"""

from __future__ import annotations

import http.client
import socket
import textwrap
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import pytest_twisted
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twistgate.config import load_text
from twistgate.generation import Generation
from twistgate.resource import GatewayResource
from twistgate.engine.twisted_web import GatewaySite

class Recorded:
    """What an upstream received."""

    def __init__(self, request: Any, body: bytes) -> None:
        self.method = request.method
        self.uri = request.uri
        self.headers: Dict[bytes, List[bytes]] = {
            k.lower(): list(v) for k, v in request.requestHeaders.getAllRawHeaders()
        }
        self.body = body

    def header(self, name: str) -> Optional[bytes]:
        values = self.headers.get(name.lower().encode())
        return values[0] if values else None


class RecordingUpstream(Resource):
    """An upstream that records requests and answers with `reply(request) -> (status, headers, body)`."""

    isLeaf = True

    def __init__(self, reply: Optional[Callable[[Any], Any]] = None) -> None:
        super().__init__()
        self.requests: List[Recorded] = []
        self.reply = reply or (lambda request: (200, [(b"Content-Type", b"text/plain")], b"hello"))

    def render(self, request: Any) -> Any:
        self.requests.append(Recorded(request, request.content.read()))
        result = self.reply(request)
        if result is NOT_DONE_YET:
            return NOT_DONE_YET
        status, headers, body = result
        request.setResponseCode(status)
        for name, value in headers:
            request.responseHeaders.addRawHeader(name, value)
        return body


class RawUpstream(protocol.Protocol):
    """An upstream that answers any request with scripted raw bytes (after the head arrives)."""

    def __init__(self, factory: "RawUpstreamFactory") -> None:
        self.factory = factory
        self.buffer = b""

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer and not getattr(self, "answered", False):
            self.answered = True
            self.factory.handler(self)

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.lost.append(reason)
        for d in self.factory.lost_waiters:
            d.callback(reason)
        self.factory.lost_waiters = []


class RawUpstreamFactory(protocol.Factory):
    def __init__(self, handler: Callable[[RawUpstream], None]) -> None:
        self.handler = handler
        self.connections: List[RawUpstream] = []
        self.lost: List[Any] = []
        self.lost_waiters: List[Deferred] = []

    def buildProtocol(self, addr: Any) -> RawUpstream:
        return RawUpstream(self)

    def next_lost(self) -> Deferred:
        d: Deferred = Deferred()
        self.lost_waiters.append(d)
        return d


def config_text(yaml: str, engine: Optional[str] = None, **ports: int) -> str:
    text = textwrap.dedent(yaml)
    for name, port in ports.items():
        text = text.replace("{" + name + "}", str(port))
    if engine is not None and not any(line.startswith("engine:") for line in text.splitlines()):
        text += f"\nengine: {engine}\n"
    return text


#: The HTTP/1.1 engines every test through `servers` runs on (issue 12: the
#: twisted.web engine stays selectable for one release, under the same tests).
ENGINES = ("httptools", "twisted")


class Servers:
    """Starts servers on free ports and stops them all at teardown; gateways run on `engine`."""

    def __init__(self, reactor: Any, engine: str = "httptools") -> None:
        self.engine = engine
        self.reactor = reactor
        self.ports: List[Any] = []
        self.generations: List[Generation] = []

    def listen(self, factory: Any) -> int:
        port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.ports.append(port)
        return port.getHost().port

    def upstream(self, resource: Resource) -> int:
        site = Site(resource)
        site.log = lambda request: None
        return self.listen(site)

    def raw_upstream(self, handler: Callable[[RawUpstream], None]) -> Tuple[int, RawUpstreamFactory]:
        factory = RawUpstreamFactory(handler)
        return self.listen(factory), factory

    def gateway(self, yaml: str, listener: str = "", **ports: int) -> Tuple[int, Generation]:
        """The gateway's HTTP/1.1 front on a free port; requests arrive on the listener named `listener`."""
        from twistgate.listeners import site_for

        config = load_text(config_text(yaml, self.engine, **ports), "test.yaml")
        generation = Generation(config, self.reactor)
        self.generations.append(generation)
        site = site_for(GatewayResource(generation), config.limits, self.reactor, engine=config.engine, listener=listener)
        return self.listen(site), generation

    def gateway_listener(self, yaml: str, **ports: int) -> Tuple[int, Generation]:
        """
        The gateway behind its first listener as `twistd` serves it: the
        listener's TLS, and its protocol factory (HTTP/2 by ALPN or h2c).
        """
        from twistgate.listeners import build_listener, factory_for

        config = load_text(config_text(yaml, self.engine, **ports), "test.yaml")
        generation = Generation(config, self.reactor)
        self.generations.append(generation)
        listener_config = config.listeners[0]
        listener = build_listener(listener_config, self.reactor)
        factory = factory_for(
            listener_config,
            GatewayResource(generation),
            config.limits,
            self.reactor,
            engine=config.engine,
            on_http2_error=generation.ops.metrics.http2_connection_error,
        )
        listening: List[Any] = []
        listener.endpoint.listen(factory).addBoth(listening.append)
        port = listening[0]
        assert not isinstance(port, Exception), port
        self.ports.append(port)
        return port.getHost().port, generation

    def close(self) -> None:
        for port in self.ports:
            pytest_twisted.blockon(port.stopListening())
        for generation in self.generations:
            pytest_twisted.blockon(generation.close())


@pytest.fixture(params=ENGINES)
def engine(request: Any) -> str:
    return request.param


@pytest.fixture
def servers(reactor: Any, engine: str):
    s = Servers(reactor, engine)
    yield s
    s.close()


SIMPLE = """
listeners:
  - {name: public, endpoint: "tcp:0"}
upstreams:
  app:
    targets: [{url: "http://127.0.0.1:{up}"}]
routes:
  - {name: all, path: "/*", upstream: app}
"""


# -- blocking clients, run in a thread ------------------------------------


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0, shutdown: bool = False) -> bytes:
    """Send raw bytes, read until the server closes or `timeout`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
        return b"".join(chunks)


class Reply:
    def __init__(self, response: http.client.HTTPResponse, body: bytes) -> None:
        self.status = response.status
        self.reason = response.reason
        self.headers = response.getheaders()
        self.body = body

    def header(self, name: str) -> Optional[str]:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name: str) -> List[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        import json

        return json.loads(self.body)


#: The sockets behind `refusing_port`, open until the run ends.
_REFUSING: List[socket.socket] = []


def refusing_port() -> int:
    """
    A port of 127.0.0.1 that refuses connections until the test run ends:
    bound, never listening.  (A `free_port` is only free a moment: a
    gateway's own ``tcp:0`` listener may be given it next, and a "dead"
    target then forwards back into the gateway.)
    """
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _REFUSING.append(held)
    return int(held.getsockname()[1])


def http_request(
    port: int,
    method: str = "GET",
    path: str = "/",
    headers: Optional[List[Tuple[str, str]]] = None,
    body: Optional[bytes] = None,
    timeout: float = 10.0,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        names = {name.lower() for name, _ in headers or []}
        conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in headers or []:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Reply(response, response.read())
    finally:
        conn.close()
