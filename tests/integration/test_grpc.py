"""
gRPC through the gateway with the real grpcio client and server (generic
handlers, raw bytes as messages): the four call types, metadata, trailers
and binary headers, deadlines, the gateway's own errors as gRPC statuses,
HTTP/2 upstreams over TLS (ALPN h2), gRPC health checks, and what metrics
and the access log record.
"""

from __future__ import annotations

import json
import platform
import threading
import time
from concurrent import futures
from typing import Any, Dict, List

import pytest

if platform.python_implementation() != "CPython":  # grpcio has no PyPy wheels (pyproject.toml)
    pytest.skip("grpcio is installed on CPython only", allow_module_level=True)

import grpc  # noqa: E402
import pytest_twisted  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from tests.h2_helpers import H2Client
from tests.tls.harness import pki  # noqa: F401  (fixture)


def _same(data: bytes) -> bytes:
    return data


class Service:
    """A gRPC service `t.Svc` whose handlers say what they saw."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.seen_metadata: List[Dict[str, Any]] = []

    def unary(self, request: bytes, context: Any) -> bytes:
        metadata = dict(context.invocation_metadata())
        metadata["time-remaining"] = context.time_remaining()
        self.seen_metadata.append(metadata)
        context.set_trailing_metadata((("x-trailer", "t1"), ("x-blob-bin", b"\x00\xff\x01")))
        return b"echo:" + request + b"|" + metadata.get("x-md", "").encode() + b"|" + metadata.get("x-id-bin", b"")

    def server_stream(self, request: bytes, context: Any) -> Any:
        for i in range(int(request)):
            yield b"item-%d" % i

    def client_stream(self, requests: Any, context: Any) -> bytes:
        return b"+".join(requests)

    def bidi(self, requests: Any, context: Any) -> Any:
        for message in requests:
            yield message.upper()

    def fail(self, request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not now: ü%")

    def slow(self, request: bytes, context: Any) -> bytes:
        for _ in range(100):
            if not context.is_active():
                self.cancelled.set()
                return b""
            time.sleep(0.05)
        return b"late"

    def big(self, request: bytes, context: Any) -> bytes:
        return b"x" * int(request)

    def handler(self) -> Any:
        return grpc.method_handlers_generic_handler(
            "t.Svc",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary, _same, _same),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, _same, _same),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, _same, _same),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, _same, _same),
                "Fail": grpc.unary_unary_rpc_method_handler(self.fail, _same, _same),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow, _same, _same),
                "Big": grpc.unary_unary_rpc_method_handler(self.big, _same, _same),
            },
        )


class GrpcServer:
    def __init__(self, credentials: Any = None) -> None:
        self.service = Service()
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((self.service.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0).wait(5)


@pytest.fixture
def grpc_server():
    server = GrpcServer()
    yield server
    server.stop()


GATEWAY = """
listeners:
  - {name: public, endpoint: "tcp:0", h2c: true}
upstreams:
  g:
    protocol: h2c
    targets: [{url: "http://127.0.0.1:{up}"}]
routes:
  - {name: svc, path: "/t.Svc/*", upstream: g}
"""


def channel(port: int) -> Any:
    return grpc.insecure_channel(f"127.0.0.1:{port}")


def _calls(port: int) -> Dict[str, Any]:
    with channel(port) as ch:
        response, call = ch.unary_unary("/t.Svc/Unary").with_call(
            b"hi", metadata=(("x-md", "m1"), ("x-id-bin", b"\x00\x01\x02")), timeout=5
        )
        return {
            "unary": response,
            "trailers": dict(call.trailing_metadata()),
            "server_stream": list(ch.unary_stream("/t.Svc/ServerStream")(b"3", timeout=5)),
            "client_stream": ch.stream_unary("/t.Svc/ClientStream")(iter([b"a", b"b", b"c"]), timeout=5),
            "bidi": list(ch.stream_stream("/t.Svc/Bidi")(iter([b"x", b"y", b"z"]), timeout=5)),
            "big": len(ch.unary_unary("/t.Svc/Big")(b"3000000", timeout=10)),
        }


@pytest_twisted.inlineCallbacks
def test_the_four_call_types_pass_with_metadata_and_trailers(servers, grpc_server):
    """Unary, server-streaming, client-streaming and bidi calls; metadata (binary too) and trailers both ways."""
    port, _ = servers.gateway_listener(GATEWAY, up=grpc_server.port)
    got = yield deferToThread(_calls, port)
    assert got["unary"] == b"echo:hi|m1|\x00\x01\x02"
    assert got["trailers"]["x-trailer"] == "t1"
    assert got["trailers"]["x-blob-bin"] == b"\x00\xff\x01"
    assert got["server_stream"] == [b"item-0", b"item-1", b"item-2"]
    assert got["client_stream"] == b"a+b+c"
    assert got["bidi"] == [b"X", b"Y", b"Z"]
    assert got["big"] == 3_000_000  # past every flow-control window, both hops
    seen = grpc_server.service.seen_metadata[0]
    assert seen["x-request-id"]  # the gateway's own headers went along
    # The client's deadline (grpc-timeout) is passed on: without it the server has none (None).
    # grpc encodes timeouts rounded up to a coarser unit, so the server may see a hair over 5 s.
    assert seen["time-remaining"] is not None and seen["time-remaining"] < 5.5


def _status(port: int, method: str, metadata: Any = (), timeout: float = 5) -> Any:
    with channel(port) as ch:
        try:
            ch.unary_unary(method)(b"x", metadata=metadata, timeout=timeout)
        except grpc.RpcError as error:
            return error.code(), error.details()
    return grpc.StatusCode.OK, None


@pytest_twisted.inlineCallbacks
def test_upstream_status_and_message_pass_unchanged(servers, grpc_server):
    port, _ = servers.gateway_listener(GATEWAY, up=grpc_server.port)
    code, details = yield deferToThread(_status, port, "/t.Svc/Fail")
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details == "not now: ü%"


@pytest_twisted.inlineCallbacks
def test_gateway_errors_are_grpc_statuses(servers, grpc_server, tmp_path):
    """No route, auth refused, IP refused, rate limited, no upstream: each a gRPC status, never a JSON body."""
    yaml = """
listeners:
  - {name: public, endpoint: "tcp:0", h2c: true}
auth:
  keys: {type: api_key, store: "sqlite:{db}"}
upstreams:
  g: {protocol: h2c, targets: [{url: "http://127.0.0.1:{up}"}]}
  down: {protocol: h2c, targets: [{url: "http://127.0.0.1:{closed}"}]}
routes:
  - {name: authed, path: "/t.Auth/*", upstream: g, auth: [keys]}
  - {name: walled, path: "/t.Wall/*", upstream: g, plugins: {ip_allow: {cidrs: [10.0.0.0/8]}}}
  - {name: limited, path: "/t.Svc/*", upstream: g, rate_limit: {rate: 1/h, burst: 1}}
  - {name: down, path: "/t.Down/*", upstream: down}
""".replace("{db}", str(tmp_path / "keys.db"))
    closed = servers.listen(_closed_factory())  # a port that refuses: listening, then closed below
    servers.ports.remove(closed_port := servers.ports[-1])
    yield closed_port.stopListening()
    port, _ = servers.gateway_listener(yaml, up=grpc_server.port, closed=closed)
    results = yield deferToThread(
        lambda: [
            _status(port, "/nowhere.Svc/Call"),
            _status(port, "/t.Auth/Call"),
            _status(port, "/t.Wall/Call"),
            _status(port, "/t.Svc/Unary"),
            _status(port, "/t.Svc/Unary"),
            _status(port, "/t.Down/Call"),
        ]
    )
    codes = [code for code, _ in results]
    assert codes == [
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.OK,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
    ]
    assert results[0][1] == "No route matches the request."


def _closed_factory() -> Any:
    from twisted.internet.protocol import Factory

    return Factory()


@pytest_twisted.inlineCallbacks
def test_trailers_only_error_on_the_wire(servers, grpc_server):
    """The gateway's gRPC error is HTTP 200, one HEADERS frame with END_STREAM, grpc-status in it."""
    port, _ = servers.gateway_listener(GATEWAY, up=grpc_server.port)

    def call() -> Any:
        with H2Client(port) as client:
            return client.request("POST", "/missing.Svc/X", [("content-type", "application/grpc"), ("te", "trailers")], body=b"\x00\x00\x00\x00\x00")

    answer = yield deferToThread(call)
    assert answer.status == 200
    assert answer.header(b"grpc-status") == b"12"
    assert answer.header(b"content-type") == b"application/grpc"
    assert answer.body == b"" and answer.trailers is None


@pytest_twisted.inlineCallbacks
def test_grpc_timeout_bounds_the_route_timeout(servers, grpc_server):
    """grpc-timeout: 300m ends the call with DEADLINE_EXCEEDED from the gateway, and the upstream call is cancelled."""
    port, generation = servers.gateway_listener(GATEWAY, up=grpc_server.port)
    records: List[Any] = []
    generation.observers.append(records.append)

    def call() -> Any:
        with H2Client(port) as client:
            started = time.monotonic()
            answer = client.request(
                "POST", "/t.Svc/Slow",
                [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "300m")],
                body=b"\x00\x00\x00\x00\x01x",
            )  # fmt: skip
            return answer, time.monotonic() - started

    answer, took = yield deferToThread(call)
    assert answer.status == 200
    assert answer.header(b"grpc-status") == b"4"
    assert 0.25 < took < 2.0
    cancelled = yield deferToThread(grpc_server.service.cancelled.wait, 5)
    assert cancelled
    assert records[-1].grpc_status == 4 and records[-1].protocol == "HTTP/2"


@pytest_twisted.inlineCallbacks
def test_the_routes_timeout_is_a_grpc_deadline_exceeded(servers, grpc_server):
    """No grpc-timeout from the client: the route's own timeout (300 ms) ends the call with DEADLINE_EXCEEDED, gRPC-shaped."""
    port, _ = servers.gateway_listener(GATEWAY.replace("upstream: g}", "upstream: g, timeout: 300ms}"), up=grpc_server.port)
    started = time.monotonic()
    code, _ = yield deferToThread(_status, port, "/t.Svc/Slow")
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3  # the route's 300 ms, not the Slow handler's 5 s
    assert (yield deferToThread(grpc_server.service.cancelled.wait, 5))  # the upstream call was cancelled


@pytest_twisted.inlineCallbacks
def test_grpcio_deadline_is_honoured(servers, grpc_server):
    port, _ = servers.gateway_listener(GATEWAY, up=grpc_server.port)
    code, _ = yield deferToThread(_status, port, "/t.Svc/Slow", (), 0.3)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest_twisted.inlineCallbacks
def test_metrics_and_access_log_count_grpc_statuses(servers, grpc_server, tmp_path):
    log = tmp_path / "access.log"
    yaml = GATEWAY + f"""
access_log: {{path: "{log}", flush_interval: 0s}}
"""
    port, generation = servers.gateway_listener(yaml, up=grpc_server.port)
    yield generation.start()
    yield deferToThread(lambda: [_status(port, "/t.Svc/Unary"), _status(port, "/t.Svc/Fail"), _status(port, "/no.Svc/X")])
    text = generation.ops.registry
    from prometheus_client import generate_latest

    exposition = generate_latest(text).decode()
    assert 'twistgate_grpc_calls_total{grpc_status="OK",route="svc"} 1.0' in exposition
    assert 'twistgate_grpc_calls_total{grpc_status="FAILED_PRECONDITION",route="svc"} 1.0' in exposition
    assert 'twistgate_grpc_calls_total{grpc_status="UNIMPLEMENTED",route=""} 1.0' in exposition
    assert 'twistgate_requests_by_protocol_total{protocol="HTTP/2"} 3.0' in exposition
    yield generation.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["protocol"], line["grpc_status"]) for line in lines] == [("HTTP/2", 0), ("HTTP/2", 9), ("HTTP/2", 12)]


@pytest_twisted.inlineCallbacks
def test_grpc_health_checks_follow_the_serving_status(servers, grpc_server, reactor):
    """type: grpc probes grpc.health.v1.Health/Check: NOT_SERVING takes the target out (UNAVAILABLE), SERVING brings it back."""
    yaml = """
listeners:
  - {name: public, endpoint: "tcp:0", h2c: true}
upstreams:
  g:
    protocol: h2c
    targets: [{url: "http://127.0.0.1:{up}"}]
    health_check: {type: grpc, grpc_service: t.Svc, interval: 0.1s, timeout: 0.05s, jitter: 0s, healthy_threshold: 1, unhealthy_threshold: 1}
routes:
  - {name: svc, path: "/t.Svc/*", upstream: g}
"""
    grpc_server.health.set("t.Svc", health_pb2.HealthCheckResponse.SERVING)
    port, generation = servers.gateway_listener(yaml, up=grpc_server.port)
    yield generation.start()
    target = generation.upstreams["g"].targets[0]
    yield deferLater(reactor, 0.3, lambda: None)
    assert target.healthy
    grpc_server.health.set("t.Svc", health_pb2.HealthCheckResponse.NOT_SERVING)
    yield _until(reactor, lambda: not target.healthy)
    assert "NOT_SERVING" in target.last_error
    code, _ = yield deferToThread(_status, port, "/t.Svc/Unary")
    assert code == grpc.StatusCode.UNAVAILABLE
    grpc_server.health.set("t.Svc", health_pb2.HealthCheckResponse.SERVING)
    yield _until(reactor, lambda: target.healthy)
    code, _ = yield deferToThread(_status, port, "/t.Svc/Unary")
    assert code == grpc.StatusCode.OK
    yield generation.stop()


@pytest_twisted.inlineCallbacks
def _until(reactor: Any, condition: Any, timeout: float = 5.0) -> Any:
    waited = 0.0
    while not condition():
        assert waited < timeout, "condition not met in time"
        yield deferLater(reactor, 0.05, lambda: None)
        waited += 0.05


@pytest_twisted.inlineCallbacks
def test_h2_upstream_over_tls_with_alpn(servers, pki):
    """protocol: h2 speaks HTTP/2 over TLS, negotiated by ALPN, verified against upstreams.X.tls.ca."""
    with open(pki.upstream.certificate, "rb") as f:
        chain = f.read()
    with open(pki.upstream.key, "rb") as f:
        key = f.read()
    server = GrpcServer(grpc.ssl_server_credentials([(key, chain)]))
    try:
        yaml = f"""
listeners:
  - {{name: public, endpoint: "tcp:0", h2c: true}}
upstreams:
  g:
    protocol: h2
    targets: [{{url: "https://127.0.0.1:{{up}}"}}]
    tls: {{ca: "{pki.upstream_ca.certificate}", server_name: upstream.internal}}
routes:
  - {{name: svc, path: "/t.Svc/*", upstream: g}}
"""
        port, _ = servers.gateway_listener(yaml, up=server.port)
        got = yield deferToThread(_calls, port)
        assert got["unary"] == b"echo:hi|m1|\x00\x01\x02"
        assert got["bidi"] == [b"X", b"Y", b"Z"]
    finally:
        server.stop()


@pytest_twisted.inlineCallbacks
def test_grpc_over_a_tls_listener_with_alpn(servers, grpc_server, pki):
    """A grpcio client over TLS: ALPN h2 picks the HTTP/2 engine."""
    yaml = f"""
listeners:
  - name: public
    endpoint: "tcp:0"
    tls: {{certificate: "{pki.server.certificate}", private_key: "{pki.server.key}"}}
upstreams:
  g: {{protocol: h2c, targets: [{{url: "http://127.0.0.1:{{up}}"}}]}}
routes:
  - {{name: svc, path: "/t.Svc/*", upstream: g}}
"""
    port, _ = servers.gateway_listener(yaml, up=grpc_server.port)
    with open(pki.root.certificate, "rb") as f:
        root = f.read()

    def call() -> Any:
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
        with grpc.secure_channel(f"localhost:{port}", credentials) as ch:
            return ch.unary_unary("/t.Svc/Unary")(b"tls", timeout=5)

    assert (yield deferToThread(call)) == b"echo:tls||"


@pytest_twisted.inlineCallbacks
def test_upstream_goaway_drains_to_a_new_connection(servers, reactor):
    """A server that GOAWAYs after each stream: every call still succeeds, on fresh connections."""
    server = GrpcServer()
    server.server.stop(0)
    options = [("grpc.max_connection_age_ms", 200), ("grpc.max_connection_age_grace_ms", 5000)]
    aged = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    aged.add_generic_rpc_handlers((Service().handler(),))
    up = aged.add_insecure_port("127.0.0.1:0")
    aged.start()
    try:
        port, generation = servers.gateway_listener(GATEWAY, up=up)

        def calls() -> List[bytes]:
            out = []
            with channel(port) as ch:
                for i in range(8):
                    out.append(ch.unary_unary("/t.Svc/Unary")(b"%d" % i, timeout=5))
                    time.sleep(0.1)
            return out

        got = yield deferToThread(calls)
        assert got == [b"echo:%d||" % i for i in range(8)]
    finally:
        aged.stop(0).wait(5)


@pytest_twisted.inlineCallbacks
def test_a_servers_stream_limit_is_honoured_from_a_connections_first_burst(servers):
    """
    A grpcio server allowing 2 concurrent streams a connection, six calls at once through the gateway: none is
    refused.  The gateway opens one stream on a new connection until the server's SETTINGS say how many it may,
    then spreads the rest over new connections (it used to send all six before the SETTINGS came: four
    REFUSED_STREAM, UNAVAILABLE).
    """
    lock = threading.Lock()
    open_by_peer: Dict[str, int] = {}
    state = {"most": 0, "entered": 0}
    release = threading.Event()

    def hold(request: bytes, context: Any) -> bytes:
        peer = context.peer()
        with lock:
            open_by_peer[peer] = open_by_peer.get(peer, 0) + 1
            state["most"] = max(state["most"], open_by_peer[peer])
            state["entered"] += 1
        release.wait(10)
        with lock:
            open_by_peer[peer] -= 1
        return b"held"

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=[("grpc.max_concurrent_streams", 2)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Svc", {"Hold": grpc.unary_unary_rpc_method_handler(hold, _same, _same)}),))
    up = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        port, _ = servers.gateway_listener(GATEWAY, up=up)

        def calls() -> Any:
            with channel(port) as ch:
                pending = [ch.unary_unary("/t.Svc/Hold").future(b"x", timeout=10) for _ in range(6)]
                deadline = time.monotonic() + 5
                while state["entered"] < 6 and time.monotonic() < deadline:
                    time.sleep(0.02)
                entered, connections = state["entered"], len(open_by_peer)
                release.set()
                results = []
                for call in pending:
                    try:
                        results.append(call.result())
                    except grpc.RpcError as error:
                        results.append(error.code())
                return entered, connections, results

        entered, connections, results = yield deferToThread(calls)
        assert results == [b"held"] * 6
        assert entered == 6 and state["most"] == 2 and connections == 3  # full connections, each within the limit
    finally:
        release.set()
        server.stop(0).wait(5)
