"""
Real TLS gateways on 127.0.0.1 for the integration tests, and blocking
clients (Python's ssl for HTTP/1.1, the h2 package for HTTP/2) that run in
threads, so what the tests see is exactly what crossed the wire.

Import the fixtures into a test module: ``from tests.tls.harness import pki, tls  # noqa: F401``.
"""

from __future__ import annotations

import json
import socket
import ssl
import textwrap
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
import pytest_twisted
from twisted.web.server import Site

from tests.integration.conftest import RecordingUpstream
from tests.tls.certs import Issued, TestPKI
from twistgate.config import load_text
from twistgate.generation import Generation
from twistgate.listeners import build_listener
from twistgate.plugins import hookimpl
from twistgate.plugins.registry import BUILTIN_PLUGINS, PluginRegistry
from twistgate.resource import GatewayResource
from twistgate.engine.twisted_web import GatewaySite
from twistgate.testing import result_of
from twistgate.tls import peer_identity


@pytest.fixture(scope="session")
def pki(tmp_path_factory: Any) -> TestPKI:
    return TestPKI.create(tmp_path_factory.mktemp("pki"))


class WhoAmI:
    """A test plugin: tells the upstream what `peer_identity` says, as JSON in X-Test-Identity."""

    @hookimpl
    def on_request(self, request: Any, route: Any) -> None:
        identity = peer_identity(request)
        value = "none" if identity is None else json.dumps(
            {
                "subject": identity.subject,
                "issuer": identity.issuer,
                "sans": list(identity.sans),
                "fingerprint": identity.fingerprint_sha256,
            }
        )
        request.headers.setRawHeaders(b"X-Test-Identity", [value.encode("ascii")])


TEST_PLUGINS = PluginRegistry({**BUILTIN_PLUGINS, "whoami": lambda options, context: WhoAmI()})


class TLSGateways:
    """Starts upstreams and TLS gateways on free ports; stops them all at teardown."""

    def __init__(self, reactor: Any, pki: TestPKI) -> None:
        self.reactor = reactor
        self.pki = pki
        self.ports: List[Any] = []
        self.generations: List[Generation] = []
        self.listeners: List[Any] = []

    def upstream(self, resource: Optional[Any] = None) -> Tuple[int, RecordingUpstream]:
        resource = resource or RecordingUpstream()
        site = Site(resource)
        site.log = lambda request: None
        port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        self.ports.append(port)
        return port.getHost().port, resource

    def gateway(self, tls_block: str, *, up: int, extra: str = "", plugins: str = "", route: str = "") -> int:
        """
        A gateway whose one listener has `tls_block` (YAML; ``{server.crt}``-style
        placeholders are PKI paths), one upstream, and one route ``/*`` with
        `plugins` and more `route` keys; `extra` is appended at top level.
        """
        paths = {f.name: getattr(self.pki, f.name) for f in attrs.fields(TestPKI) if f.name not in ("directory", "factory")}
        block = textwrap.dedent(tls_block).strip()
        for name, issued in paths.items():
            block = block.replace("{" + name + ".crt}", issued.certificate).replace("{" + name + ".key}", issued.key)
        yaml = "listeners:\n  - name: tls\n    endpoint: \"tcp:0:interface=127.0.0.1\"\n    tls:\n"
        yaml += textwrap.indent(block, "      ") + "\n"
        yaml += f"upstreams:\n  app:\n    targets: [{{url: \"http://127.0.0.1:{up}\"}}]\n"
        yaml += "routes:\n  - name: all\n    path: /*\n    upstream: app\n"
        if plugins:
            yaml += f"    plugins: {plugins}\n"
        yaml += textwrap.indent(textwrap.dedent(route).strip(), "    ") + "\n" if route else ""
        yaml += textwrap.dedent(extra)
        config = load_text(yaml, "test.yaml")
        generation = Generation(config, self.reactor, plugin_registry=TEST_PLUGINS)
        self.generations.append(generation)
        site = GatewaySite(GatewayResource(generation), config.limits, self.reactor)
        listener = build_listener(config.listeners[0], self.reactor, source="test.yaml")
        self.listeners.append(listener)
        port = result_of(listener.endpoint.listen(site))  # TCP listens at once
        self.ports.append(port)
        return int(port.getHost().port)

    def close(self) -> None:
        for port in self.ports:
            pytest_twisted.blockon(port.stopListening())
        for generation in self.generations:
            pytest_twisted.blockon(generation.close())


@pytest.fixture
def tls(reactor: Any, pki: TestPKI):
    gateways = TLSGateways(reactor, pki)
    yield gateways
    gateways.close()


# -- blocking clients, run in a thread ------------------------------------------


def client_context(
    pki: TestPKI,
    *,
    client: Optional[Issued] = None,
    alpn: Sequence[str] = (),
    maximum: Optional[ssl.TLSVersion] = None,
    minimum: Optional[ssl.TLSVersion] = None,
    ciphers: Optional[str] = None,
) -> ssl.SSLContext:
    """A client that trusts the test root (the server sends the intermediate)."""
    context = ssl.create_default_context(cafile=pki.root.certificate)
    if client is not None:
        context.load_cert_chain(client.certificate, client.key)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    with warnings.catch_warnings():
        # Some tests offer TLS 1.0/1.1 on purpose, to see them refused.
        warnings.filterwarnings("ignore", "ssl.TLSVersion.TLSv1", DeprecationWarning)
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def connect(port: int, context: ssl.SSLContext, server_name: Optional[str] = "localhost", timeout: float = 10.0) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return context.wrap_socket(sock, server_hostname=server_name)
    except BaseException:
        sock.close()
        raise


def https_get(
    port: int,
    context: ssl.SSLContext,
    path: str = "/",
    *,
    server_name: Optional[str] = "localhost",
    headers: Sequence[Tuple[str, str]] = (),
    method: str = "GET",
    body: bytes = b"",
) -> Tuple[int, Dict[str, str], bytes]:
    """One HTTP/1.1 request over TLS; a failed handshake raises ssl.SSLError or OSError."""
    with connect(port, context, server_name) as tls_socket:
        head = f"{method} {path} HTTP/1.1\r\nHost: {server_name or 'localhost'}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        tls_socket.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while True:
            chunk = tls_socket.recv(65536)
            if not chunk:
                break
            data += chunk
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    response_headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    return status, response_headers, rest


def handshake_fails(port: int, context: ssl.SSLContext, server_name: Optional[str] = "localhost") -> str:
    """
    Expect the server to refuse this client; return what the client saw.
    With TLS 1.3 the client finishes its half of the handshake before the
    server checks its certificate, so the refusal arrives on the first read.
    """
    try:
        status, _, _ = https_get(port, context, server_name=server_name)
    except (ssl.SSLError, ConnectionError) as e:
        return str(e)
    raise AssertionError(f"the server accepted the connection and answered {status}")


def peer_certificate_der(port: int, context: ssl.SSLContext, server_name: Optional[str]) -> bytes:
    with connect(port, context, server_name) as tls_socket:
        der = tls_socket.getpeercert(binary_form=True)
        assert der is not None
        return der


def h2_exchange(
    port: int,
    context: ssl.SSLContext,
    requests: Sequence[Tuple[str, str, bytes]],
    *,
    server_name: str = "localhost",
    extra_headers: Sequence[Tuple[str, str]] = (),
) -> List[Tuple[int, Dict[str, str], bytes]]:
    """Requests (method, path, body) as concurrent streams of one HTTP/2 connection."""
    with connect(port, context, server_name) as tls_socket:
        assert tls_socket.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        streams: Dict[int, Dict[str, Any]] = {}
        for method, path, body in requests:
            stream_id = conn.get_next_available_stream_id()
            headers = [(":method", method), (":path", path), (":scheme", "https"), (":authority", server_name)]
            headers += list(extra_headers)
            if body:
                headers.append(("content-length", str(len(body))))
            conn.send_headers(stream_id, headers, end_stream=not body)
            streams[stream_id] = {"headers": {}, "body": b"", "done": False, "send": body}
        tls_socket.sendall(conn.data_to_send())
        _send_bodies(conn, tls_socket, streams)
        while not all(s["done"] for s in streams.values()):
            data = tls_socket.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                stream = streams.get(getattr(event, "stream_id", 0))
                if isinstance(event, h2.events.ResponseReceived) and stream is not None:
                    stream["headers"] = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h2.events.DataReceived) and stream is not None:
                    stream["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and stream is not None:
                    stream["done"] = True
                elif isinstance(event, h2.events.WindowUpdated):
                    _send_bodies(conn, tls_socket, streams)
            tls_socket.sendall(conn.data_to_send())
        return [(int(s["headers"].get(":status", 0)), s["headers"], s["body"]) for s in streams.values()]


def _send_bodies(conn: Any, tls_socket: Any, streams: Mapping[int, Dict[str, Any]]) -> None:
    """Send as much of each pending body as flow control allows."""
    for stream_id, stream in streams.items():
        pending = stream["send"]
        while pending:
            try:
                window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                conn.send_data(stream_id, pending[:window], end_stream=len(pending) <= window)
            except h2.exceptions.StreamClosedError:  # answered early and reset by the server
                pending = b""
                break
            pending = pending[window:]
        stream["send"] = pending
    tls_socket.sendall(conn.data_to_send())


def _groups_skippable() -> bool:
    """
    Whether a test of TLS group choice may be skipped: only where this
    cryptography cannot choose groups (PyPy 3.9's last wheel) and not on
    CPython under CI, where a missing binding must fail the test, not hide it.
    """
    import os
    import platform

    from twistgate.tls.certificate_context import groups_settable

    if os.environ.get("CI") and platform.python_implementation() == "CPython":
        return False
    return not groups_settable()


#: For tests of TLS group choice (see `_groups_skippable`).
needs_groups = pytest.mark.skipif(_groups_skippable(), reason="this cryptography cannot choose TLS groups (PyPy 3.9's last wheel)")

