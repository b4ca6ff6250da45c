"""
Issue 14, hardening items 6, 7 and 8, on both HTTP/1.1 engines (the
``servers`` fixture runs each test on httptools and on twisted.web), over
real sockets:

6. a chunk size that overflows 64 bits is 400 and close; a chunk declared
   larger than the body limit is 413 before any of it is read;
7. a request with bare LF line endings is answered at once, not at the
   header timeout;
8. a 400 for a missing or duplicate Host closes the connection; an HTTP/1.0
   request without Host never sends an empty ``X-Forwarded-Host`` upstream.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.integration.conftest import RecordingUpstream

GATEWAY = """
listeners: [{name: p, endpoint: "tcp:0"}]
limits: {max_request_body: 1KiB, header_timeout: 5s, client_body_timeout: 5s}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: all, path: "/*", upstream: app}
"""

#: Well below the header and body timeouts (5 s): "at once".
PROMPT = 2.5


def _gateway(servers):
    upstream = RecordingUpstream()
    gw, _ = servers.gateway(GATEWAY, up=servers.upstream(upstream))
    return gw, upstream


def _exchange(port: int, data: bytes, timeout: float = 8.0) -> "tuple[bytes, float, bool]":
    """Send `data`, read until the gateway closes: (what came back, seconds it took, closed by the gateway)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks), time.monotonic() - started, True
                chunks.append(chunk)
        except socket.timeout:
            return b"".join(chunks), time.monotonic() - started, False


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def _error(raw: bytes) -> str:
    return json.loads(raw.partition(b"\r\n\r\n")[2])["error"]


# -- 6: chunk sizes are bounded ---------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_an_overflowing_chunk_size_is_400_and_close(servers):
    gw, upstream = _gateway(servers)
    raw, took, closed = yield deferToThread(
        _exchange, gw, b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nabc"
    )
    assert _status(raw) == 400 and _error(raw) == "bad_request", raw
    assert closed and took < PROMPT


@pytest_twisted.inlineCallbacks
def test_a_chunk_declared_larger_than_the_limit_is_413_before_its_bytes(servers):
    gw, upstream = _gateway(servers)
    # 0x800 = 2 KiB > 1 KiB: answered on the size line alone, none of the chunk sent
    raw, took, closed = yield deferToThread(
        _exchange, gw, b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"
    )
    assert _status(raw) == 413 and _error(raw) == "payload_too_large", raw
    assert closed and took < PROMPT


# -- 7: bare LF ----------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_a_bare_lf_request_is_answered_at_once(servers):
    gw, upstream = _gateway(servers)
    raw, took, closed = yield deferToThread(_exchange, gw, b"GET /x HTTP/1.1\nHost: a\n\n")
    assert took < PROMPT, (took, raw)
    assert _status(raw) == 400 and closed, raw
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_a_bare_lf_inside_a_head_is_refused_at_once(servers):
    gw, upstream = _gateway(servers)
    raw, took, closed = yield deferToThread(_exchange, gw, b"GET /x HTTP/1.1\r\nHost: a\nX-Smuggle: 1\r\n\r\n")
    assert _status(raw) == 400 and closed and took < PROMPT, raw
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_a_bare_lf_in_a_chunk_size_line_is_refused_at_once(servers):
    gw, upstream = _gateway(servers)
    raw, took, closed = yield deferToThread(
        _exchange, gw, b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"
    )
    assert _status(raw) == 400 and closed and took < PROMPT, raw


@pytest_twisted.inlineCallbacks
def test_a_body_may_hold_bare_lfs(servers):
    """Only the head's (and the chunk lines') line ends are checked: the body is bytes."""
    gw, upstream = _gateway(servers)
    body = b"a\nb\n\nc\n"
    raw, _, _ = yield deferToThread(
        _exchange, gw,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body),
    )  # fmt: skip
    assert _status(raw) == 200, raw
    assert upstream.requests[0].body == body


# -- 8: Host ------------------------------------------------------------------------


@pytest.mark.parametrize("head", [
    b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\r\n folded\r\n\r\n",  # obs-fold (RFC 9112 5.2)
    b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\r\n\tfolded\r\n\r\n",
    b"GET /x HTTP/1.1\r\n Host: a\r\n\r\n",  # whitespace before the first field (RFC 9112 2.2)
])
@pytest_twisted.inlineCallbacks
def test_a_folded_header_is_400_and_close(servers, head):
    """Refused, not joined: the request pipelined behind it never reaches the upstream (both engines alike)."""
    gw, upstream = _gateway(servers)
    raw, took, closed = yield deferToThread(_exchange, gw, head + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert _status(raw) == 400 and _error(raw) == "bad_request", raw
    assert closed and took < PROMPT
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_a_missing_host_is_400_and_close(servers):
    gw, upstream = _gateway(servers)
    raw, took, closed = yield deferToThread(_exchange, gw, b"GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n")
    assert _status(raw) == 400 and _error(raw) == "bad_request", raw
    assert closed and took < PROMPT
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_a_duplicate_host_is_400_and_close(servers):
    gw, upstream = _gateway(servers)
    raw, took, closed = yield deferToThread(
        _exchange, gw, b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert _status(raw) == 400 and raw.count(b"HTTP/1.1 ") == 1, raw  # the next request is not read
    assert closed and took < PROMPT
    assert upstream.requests == []


@pytest_twisted.inlineCallbacks
def test_http10_without_host_sends_no_empty_forwarded_host(servers):
    gw, upstream = _gateway(servers)
    raw, _, _ = yield deferToThread(_exchange, gw, b"GET /x HTTP/1.0\r\n\r\n")
    assert raw.startswith((b"HTTP/1.0 200 ", b"HTTP/1.1 200 ")), raw
    (seen,) = upstream.requests
    assert seen.header("X-Forwarded-Host") is None
    forwarded = seen.header("Forwarded") or b""
    assert b"host=;" not in forwarded and b"host=" not in forwarded
    assert seen.header("X-Forwarded-For") == b"127.0.0.1"
