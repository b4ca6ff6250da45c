"""W3C trace context across real sockets, and spans exported to a local fake OTLP/HTTP collector."""

from __future__ import annotations

import json
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.ops.live import LiveGateway, request

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: integration-token}
tracing: {otlp_endpoint: "http://127.0.0.1:{collector}", export_interval: 100ms, service_name: edge-gw}
upstreams: {app: {targets: [{url: "http://127.0.0.1:{up}"}]}}
routes:
  - {name: api, path: "/*", upstream: app}
"""


class Recorder(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: List[Any] = []

    def render(self, request: Any) -> bytes:
        self.requests.append((request.method, request.path, request.requestHeaders, request.content.read()))
        request.setHeader(b"Content-Type", b"application/json")
        return b"{}"


@pytest.fixture
def listen(reactor):
    ports = []

    def start(resource: Resource) -> int:
        site = Site(resource)
        site.log = lambda request: None
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        ports.append(port)
        return port.getHost().port

    yield start
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


@pytest_twisted.inlineCallbacks
def test_trace_reaches_the_upstream_and_the_collector(reactor, tmp_path, listen):
    upstream, collector = Recorder(), Recorder()
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", CONFIG, up=listen(upstream), collector=listen(collector))
    yield gateway.start()
    try:
        incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        status, head, _ = yield deferToThread(request, gateway.port, "GET", "/orders?id=1", {"traceparent": incoming, "tracestate": "congo=t61rcWkgMzE"})
        assert status == 200 and "traceparent" not in head
        for _ in range(50):
            if collector.requests:
                break
            yield deferLater(reactor, 0.1, lambda: None)
    finally:
        yield gateway.stop()
    (_, _, headers, _), = upstream.requests
    (traceparent,) = headers.getRawHeaders(b"traceparent")
    _, trace_id, parent_id, flags = traceparent.decode().split("-")
    assert (trace_id, flags) == ("0af7651916cd43dd8448eb211c80319c", "01")
    assert headers.getRawHeaders(b"tracestate") == [b"congo=t61rcWkgMzE"]
    method, path, collector_headers, body = collector.requests[0]
    assert (method, path) == (b"POST", b"/v1/traces")
    assert collector_headers.getRawHeaders(b"content-type") == [b"application/json"]
    spans = [s for post in collector.requests for rs in json.loads(post[3])["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    server = next(s for s in spans if s["kind"] == 2)
    client = next(s for s in spans if s["kind"] == 3)
    assert server["traceId"] == client["traceId"] == trace_id
    assert server["parentSpanId"] == "b7ad6b7169203331"
    assert client["parentSpanId"] == server["spanId"] and client["spanId"] == parent_id
    assert server["traceState"] == "congo=t61rcWkgMzE"
    assert int(server["endTimeUnixNano"]) >= int(client["endTimeUnixNano"]) >= int(client["startTimeUnixNano"]) >= int(server["startTimeUnixNano"])


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


@pytest_twisted.inlineCallbacks
def test_a_dead_collector_costs_no_request(reactor, tmp_path, listen):
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", CONFIG, up=listen(Recorder()), collector=_closed_port())
    yield gateway.start()
    try:
        results = []
        for _ in range(5):
            status, _, _ = yield deferToThread(request, gateway.port, "GET", "/x")
            results.append(status)
        # Failed exports are counted as they fail; poll (bounded) rather than guess a delay.
        dropped = 0.0
        for _ in range(50):
            yield deferLater(reactor, 0.1, lambda: None)
            _, _, metrics = yield deferToThread(request, gateway.admin_port, "GET", "/metrics")
            lines = [l for l in metrics.decode().splitlines() if l.startswith("twistgate_tracing_spans_dropped_total")]
            dropped = float(lines[0].split()[-1]) if lines else 0.0
            if dropped >= 10:
                break
    finally:
        yield gateway.stop()
    assert results == [200] * 5
    assert dropped >= 10  # a request span and an attempt span each
