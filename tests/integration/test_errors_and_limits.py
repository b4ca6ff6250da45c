"""Errors the gateway answers itself, and the edge limits, over real sockets."""

from __future__ import annotations

import json
import socket
import time

import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.server import NOT_DONE_YET

from tests.integration.conftest import SIMPLE, RecordingUpstream, http_request, raw_exchange, refusing_port


def _json_error(reply, status, code):
    assert reply.status == status, reply.body
    assert reply.header("Content-Type") == "application/json"
    body = reply.json()
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == reply.header("X-Request-ID")
    assert "Traceback" not in reply.body.decode()
    return body


ROUTED = """
listeners: [{name: p, endpoint: "tcp:0"}]
limits: {max_request_body: 1KiB, max_header_bytes: 2KiB, max_headers: 20, max_request_line: 512B, header_timeout: 300ms}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}], timeouts: {connect: 1s, read: 300ms}}
  dead: {targets: [{url: "http://127.0.0.1:{dead}"}]}
routes:
  - {name: users, path: "/users/{id}", methods: [GET, PUT], upstream: app}
  - {name: dead, path: "/dead/*", upstream: dead}
  - {name: slow, path: "/slow", upstream: app, timeout: 300ms}
  - {name: other, path: "/x/*", upstream: app}
"""



def _gateway(servers, reply=None):
    upstream = RecordingUpstream(reply)
    gw, _ = servers.gateway(ROUTED, up=servers.upstream(upstream), dead=refusing_port())
    return gw, upstream


@pytest_twisted.inlineCallbacks
def test_no_route_is_404_json(servers):
    gw, _ = _gateway(servers)
    reply = yield deferToThread(http_request, gw, "GET", "/nothing/here")
    _json_error(reply, 404, "route_not_found")


@pytest_twisted.inlineCallbacks
def test_wrong_method_is_405_with_allow(servers):
    gw, upstream = _gateway(servers)
    reply = yield deferToThread(http_request, gw, "DELETE", "/users/7")
    _json_error(reply, 405, "method_not_allowed")
    assert reply.header("Allow") == "GET, HEAD, PUT"
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_connection_refused_is_502(servers):
    gw, _ = _gateway(servers)
    reply = yield deferToThread(http_request, gw, "GET", "/dead/x", [("X-Request-ID", "req-502")])
    body = _json_error(reply, 502, "bad_gateway")
    assert body["request_id"] == "req-502"


@pytest_twisted.inlineCallbacks
def test_upstream_that_never_answers_is_504(servers):
    gw, _ = _gateway(servers, lambda request: NOT_DONE_YET)
    started = time.monotonic()
    reply = yield deferToThread(http_request, gw, "GET", "/x/hang")
    _json_error(reply, 504, "upstream_timeout")
    assert time.monotonic() - started < 5


@pytest_twisted.inlineCallbacks
def test_upstream_closing_without_answer_is_502(servers):
    """A 502 whose code says what happened (issue 18), on both engines."""
    def handler(proto):
        proto.transport.loseConnection()

    up, _ = servers.raw_upstream(handler)
    gw, _ = servers.gateway(SIMPLE, up=up)
    reply = yield deferToThread(http_request, gw, "GET", "/")
    _json_error(reply, 502, "upstream_closed_connection")


@pytest_twisted.inlineCallbacks
def test_upstream_garbage_is_502(servers):
    def handler(proto):
        proto.transport.write(b"SMTP ready\r\n\r\n")
        proto.transport.loseConnection()

    up, _ = servers.raw_upstream(handler)
    gw, _ = servers.gateway(SIMPLE, up=up)
    reply = yield deferToThread(http_request, gw, "GET", "/")
    _json_error(reply, 502, "bad_gateway")


@pytest_twisted.inlineCallbacks
def test_declared_body_over_limit_is_413_before_it_is_sent(servers):
    """The 413 arrives right after the head: the gateway does not wait for (or read) the body."""
    gw, upstream = _gateway(servers)

    def client():
        with socket.create_connection(("127.0.0.1", gw), timeout=5) as sock:
            sock.sendall(b"PUT /users/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
            return sock.recv(65536)

    raw = yield deferToThread(client)
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b'"error":"payload_too_large"' in raw
    assert b"Connection: close" in raw
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_chunked_body_over_limit_is_413(servers):
    gw, upstream = _gateway(servers)
    chunk = b"%x\r\n%s\r\n" % (600, b"x" * 600)
    raw = yield deferToThread(
        raw_exchange,
        gw,
        b"PUT /users/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b'"error":"payload_too_large"' in raw


@pytest_twisted.inlineCallbacks
def test_too_large_headers_are_431(servers):
    gw, _ = _gateway(servers)
    raw = yield deferToThread(
        raw_exchange, gw, b"GET /x/1 HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 431 ")
    assert b'"error":"request_header_fields_too_large"' in raw


@pytest_twisted.inlineCallbacks
def test_too_many_headers_are_431(servers):
    gw, _ = _gateway(servers)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
    raw = yield deferToThread(raw_exchange, gw, b"GET /x/1 HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 431 ")


@pytest_twisted.inlineCallbacks
def test_long_request_line_is_414(servers):
    gw, _ = _gateway(servers)
    raw = yield deferToThread(raw_exchange, gw, b"GET /x/" + b"a" * 1000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 414 ")
    assert b'"error":"uri_too_long"' in raw


@pytest_twisted.inlineCallbacks
def test_slow_request_head_is_408(servers):
    """A client that starts a request and stalls gets 408 after header_timeout, not a hung socket."""
    gw, _ = _gateway(servers)
    started = time.monotonic()
    raw = yield deferToThread(raw_exchange, gw, b"GET /x/1 HTTP/1.1\r\nHost: a\r\n")
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3


@pytest_twisted.inlineCallbacks
def test_content_length_with_transfer_encoding_is_400(servers):
    """A request smuggling classic: both framings at once is refused, not guessed."""
    gw, upstream = _gateway(servers)
    raw = yield deferToThread(
        raw_exchange,
        gw,
        b"POST /x/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["error"] == "bad_request"
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_missing_host_on_http11_is_400(servers):
    gw, _ = _gateway(servers)
    raw = yield deferToThread(raw_exchange, gw, b"GET /x/1 HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")


@pytest_twisted.inlineCallbacks
def test_bad_path_is_400(servers):
    gw, _ = _gateway(servers)
    raw = yield deferToThread(raw_exchange, gw, b"GET /x/%zz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")
