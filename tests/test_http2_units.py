"""
The pieces of HTTP/2 and gRPC support that need no socket: config keys,
field rules, the flood scanner, a stream over its body limit, gRPC
statuses and timeouts, and the gRPC health messages.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, List

import pytest
from twisted.internet.task import Clock

from tests.config_helpers import config_loader
from twistgate.engine.http2_common import PREFACE, from_h2_fields, request_problem, to_h2_fields
from twistgate.engine.http2_floods import FrameScanner, TokenBucket
from twistgate.engine.http2_server_stream import H2Stream
from twistgate.errors import RateLimited, RouteNotFound, ServiceUnavailable, UpstreamTimeout, Unauthorized
from twistgate.grpc import code_for, encode_message, error_response, is_grpc, parse_timeout
from twistgate.headers import Headers
from twistgate.upstream.grpc_health import GrpcHealthError, check_request, parse_check_response

load, _issues = config_loader()


def issues(text: str) -> str:
    return "\n".join(f"{path}: {message}" for _, path, message in _issues(text))


BASE = """
listeners: [{name: p, endpoint: "tcp:0"LISTENER}]
upstreams:
  g:
    PROTOCOL
    targets: [{url: "TARGET"}]
    EXTRA
routes: [{name: r, path: "/*", upstream: g}]
"""


def config(listener: str = "", protocol: str = "", target: str = "http://127.0.0.1:1", extra: str = "") -> str:
    return BASE.replace("LISTENER", listener).replace("PROTOCOL", protocol).replace("TARGET", target).replace("EXTRA", extra)


def test_h2c_is_for_cleartext_listeners():
    text = config(', h2c: true, tls: {certificate: a.pem, private_key: b.pem}')
    assert "h2c is cleartext HTTP/2" in issues(text)


def test_h2c_and_protocol_are_read():
    loaded = load(config(", h2c: true", "protocol: h2c"))
    assert loaded.listeners[0].h2c is True
    assert loaded.upstreams["g"].protocol == "h2c"
    assert load(config()).upstreams["g"].protocol == "http1"


@pytest.mark.parametrize(
    "protocol,target,message",
    [
        ("protocol: h2", "http://127.0.0.1:1", "protocol: h2 needs https:// targets"),
        ("protocol: h2c", "https://127.0.0.1:1", "protocol: h2c needs http:// targets"),
        ("protocol: http2", "http://127.0.0.1:1", "upstreams.g.protocol"),
    ],
)
def test_protocol_must_match_the_targets(protocol, target, message):
    assert message in issues(config(protocol=protocol, target=target))


def test_grpc_health_check_needs_http2_and_no_path():
    assert "needs protocol: h2 or h2c" in issues(config(extra="health_check: {type: grpc}"))
    assert "health_check.path: unknown key 'path'" in issues(config(protocol="protocol: h2c", extra="health_check: {type: grpc, path: /x}"))
    health = load(config(protocol="protocol: h2c", extra="health_check: {type: grpc, grpc_service: a.B}")).upstreams["g"].policies["health_check"]
    assert (health.type, health.check.options["grpc_service"]) == ("grpc", "a.B")


@pytest.mark.parametrize(
    "fields,problem",
    [
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")], None),
        ([(b":method", b"GET"), (b":path", b"/")], "missing :scheme"),
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"")], "empty :path"),
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"X-A", b"1")], "invalid field name"),
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"connection", b"close")], "connection-specific"),
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"te", b"gzip")], "TE other than"),
        ([(b":method", b"GET"), (b"a", b"1"), (b":scheme", b"http"), (b":path", b"/")], "after a regular field"),
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"x", b" padded")], "invalid value"),
    ],
)
def test_request_field_rules(fields, problem):
    found = request_problem(fields)
    assert (found is None) if problem is None else (problem in found)


def test_cookies_are_joined_and_host_is_never_sent():
    headers = from_h2_fields([(b":method", b"GET"), (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"x-y", b"z")])
    assert headers.raw == {b"Cookie": [b"a=1; b=2"], b"X-Y": [b"z"]}
    out = to_h2_fields([(b":status", b"200")], Headers({b"Host": [b"h"], b"Connection": [b"close"], b"X-A": [b"1"]}))
    assert out == [(b":status", b"200"), (b"x-a", b"1")]


def frame(kind: int, flags: int, length: int) -> bytes:
    return length.to_bytes(3, "big") + bytes([kind, flags]) + b"\x00\x00\x00\x01" + b"\x00" * length


def test_scanner_stops_a_continuation_flood_and_a_ping_flood():
    clock = Clock()
    scanner = FrameScanner(max_block=1000, max_continuations=4, control=TokenBucket(clock, 10, 10))
    assert scanner.feed(PREFACE + frame(1, 0, 10)) is None  # HEADERS without END_HEADERS
    assert scanner.feed(frame(9, 0, 10) * 4) is None
    code, reason = scanner.feed(frame(9, 0, 10))
    assert code == 0xB and "CONTINUATION" in reason
    pings = FrameScanner(max_block=1000, max_continuations=4, control=TokenBucket(clock, 10, 10))
    assert pings.feed(PREFACE + frame(6, 0, 8) * 10) is None
    assert pings.feed(frame(6, 0, 8))[0] == 0xB
    clock.advance(1)  # refilled
    assert pings.feed(frame(6, 0, 8) * 5) is None


def test_scanner_reads_frames_split_anywhere():
    scanner = FrameScanner(max_block=100, max_continuations=2, control=TokenBucket(Clock(), 1, 1))
    data = PREFACE + frame(1, 0, 50) + frame(9, 0, 30) + frame(9, 0, 30)
    verdicts = [scanner.feed(data[i : i + 7]) for i in range(0, len(data), 7)]
    assert [v for v in verdicts if v is not None][0][1] == "CONTINUATION flood"


def test_settings_ack_with_payload_is_a_frame_size_error():
    scanner = FrameScanner(max_block=100, max_continuations=2, control=TokenBucket(Clock(), 1, 1))
    assert scanner.feed(PREFACE + frame(4, 1, 6))[0] == 0x6


@pytest.mark.parametrize(
    "value,seconds",
    [(b"100m", 0.1), (b"2S", 2.0), (b"1H", 3600.0), (b"5u", 5e-6), (b"12345678n", 0.012345678), (b"123456789S", None), (b"1x", None), (None, None)],
)
def test_grpc_timeout(value, seconds):
    assert parse_timeout(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_gateway_errors_as_grpc_statuses():
    assert [code_for(e) for e in (RouteNotFound(), Unauthorized(), RateLimited(), ServiceUnavailable(), UpstreamTimeout())] == [12, 16, 8, 14, 4]
    from twistgate.errors import Forbidden, MethodNotAllowed
    from twistgate.upstream.failures import CircuitOpen, NoHealthyUpstream

    # The issue's list: permission denied, method unknown here, no healthy target and an open breaker.
    assert [code_for(e) for e in (Forbidden(), MethodNotAllowed("x"), NoHealthyUpstream(), CircuitOpen())] == [7, 12, 14, 14]
    status, headers, body = error_response(RateLimited(headers=((b"Retry-After", b"3"),)), "rid", b"date", b"application/grpc+proto")
    assert (status, body) == (200, b"")
    assert headers.raw[b"Grpc-Status"] == [b"8"]
    assert headers.raw[b"Content-Type"] == [b"application/grpc+proto"]
    assert headers.raw[b"Retry-After"] == [b"3"]
    assert encode_message("50% ü") == b"50%25 %C3%BC"
    assert is_grpc(Headers({b"Content-Type": [b"application/grpc"]}))
    assert not is_grpc(Headers({b"Content-Type": [b"application/json"]}))


def test_health_messages():
    assert check_request("") == b"\x00\x00\x00\x00\x00"
    assert check_request("a.B") == b"\x00\x00\x00\x00\x05\x0a\x03a.B"
    assert parse_check_response(b"\x00\x00\x00\x00\x02\x08\x01") == 1
    assert parse_check_response(b"\x00\x00\x00\x00\x00") == 0
    with pytest.raises(GrpcHealthError):
        parse_check_response(b"\x01\x00\x00\x00\x00")


class _Connection:
    """What an H2Stream asks of its connection, recording the engine's own answers."""

    peer = None
    secure = False
    transport = None
    listener = "p"
    settings = SimpleNamespace(max_body=10)

    def __init__(self) -> None:
        self.events: List[Any] = []

    def acknowledge(self, stream: H2Stream, length: int) -> None:
        pass

    def refuse(self, stream: H2Stream, error: Any) -> None:
        self.events.append(("answered", error.status))


def test_a_body_over_the_limit_is_answered_413_before_the_upstream_request_fails():
    """Aborting the body fails the forwarding at once (its answer: 400); the 413 must be written first."""
    connection = _Connection()
    stream = H2Stream(connection, 1, b"POST", b"/up", Headers(), body_expected=True)  # type: ignore[arg-type]
    stream.body.whole().addErrback(lambda failure: connection.events.append(("upstream request failed", None)))
    stream.data_received(b"x" * 6, 6)
    assert connection.events == []
    stream.data_received(b"x" * 6, 6)
    assert connection.events == [("answered", 413), ("upstream request failed", None)]
