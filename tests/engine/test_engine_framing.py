"""
Strict request framing: every rule of the HTTP/1.1 server, one case each.
A refused request is answered with the gateway's JSON error and the
connection closes; the handler never sees it.
"""

from __future__ import annotations

import json

import pytest

from tests.engine.engine_fakes import Served, ok
from twistgate.engine import ServerLimits

H = b"Host: a\r\n"

REFUSED = [
    ("content-length with transfer-encoding", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("transfer-encoding with content-length", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", 400),
    ("two content-lengths, different", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", 400),
    ("two content-lengths, identical (refused too)", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("content-length list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4, 4\r\n\r\nabcd", 400),
    ("content-length not a number", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4x\r\n\r\nabcd", 400),
    ("content-length signed", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +4\r\n\r\nabcd", 400),
    ("content-length negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("content-length overflow", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("final coding not chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("identity coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("chunked twice", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("chunked with parameters", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    ("another coding before chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("codings split over two fields", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ("transfer-encoding on HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("invalid chunk size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("chunk size with 0x", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x1\r\nx\r\n0\r\n\r\n", 400),
    ("chunk size with space", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n", 400),
    ("negative chunk size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n", 400),
    ("chunk size overflow 2^64+1", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n10000000000000001\r\n", 400),
    ("chunk data longer than its size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", 400),
    ("chunk line with bare LF", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", 400),
    ("invalid trailer", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("obs-fold with tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", 400),
    ("bare LF after a header", b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400),
    ("bare CR in a header", b"GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", 400),
    ("NUL in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("DEL in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),
    ("whitespace before the colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    ("empty field name", b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n", 400),
    ("no Host on HTTP/1.1", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("two Hosts on HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("unknown method", b"FOO / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("lower-case method", b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space in the target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("control byte in the target", b"GET /a\x01 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("non-ASCII target", b"GET /\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("fragment in the target", b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("two spaces in the request line", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 400),
    ("HTTP/2.0 in a request line", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("HTTP/0.9", b"GET /\r\n\r\n", 400),
    ("not HTTP at all", b"SMTP ready\r\n\r\n", 400),
]


@pytest.mark.parametrize("name, data, status", REFUSED, ids=[case[0] for case in REFUSED])
def test_refused_and_closed(name, data, status):
    served = Served().send(data)  # the handler never answers: whatever is written is the engine's
    replies = served.responses()
    assert [reply.status for reply in replies] == [status], served.output()
    reply = replies[0]
    assert reply.header(b"Content-Type") == b"application/json"
    assert reply.header(b"Connection") == b"close"
    assert reply.header(b"Cache-Control") == b"no-store"
    body = json.loads(reply.body)
    assert body["request_id"] == reply.header(b"X-Request-Id").decode()
    assert served.closed
    assert served.requests == [] or name.startswith(("invalid chunk", "chunk", "negative chunk", "invalid trailer"))


def test_chunk_errors_abort_the_streaming_body():
    """A chunked body refused mid-way: the handler had the request, its body fails and notify_finish errbacks."""
    failures = []
    served = Served()
    served.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    request = served.requests[0]
    request.notify_finish().addErrback(failures.append)
    served.send(b"zz\r\n")
    assert failures and failures[0].value.status == 400
    assert served.responses()[0].status == 400


def test_bare_lf_request_is_refused_at_once():
    """Issue 14 item 7: no stalling until the header timeout."""
    served = Served(ok).send(b"GET / HTTP/1.1\nHost: a\n\n")
    assert served.responses()[0].status == 400
    assert served.closed


def test_bare_lf_request_line_alone_is_refused_at_once():
    served = Served(ok).send(b"GET / HTTP/1.1\n")
    assert served.responses()[0].status == 400


def test_declared_chunk_over_the_limit_is_413_before_its_data():
    served = Served(limits=ServerLimits(max_request_body=1000))
    served.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n")
    assert served.responses()[0].status == 413
    assert served.closed


def test_chunks_adding_up_over_the_limit_are_413():
    served = Served(limits=ServerLimits(max_request_body=1000))
    served.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    served.send(b"258\r\n" + b"x" * 600 + b"\r\n")
    assert served.output() == b""
    served.send(b"258\r\n")
    assert served.responses()[0].status == 413


def test_declared_content_length_over_the_limit_is_413_before_the_handler():
    served = Served(ok, limits=ServerLimits(max_request_body=10))
    served.send(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    assert served.responses()[0].status == 413
    assert served.requests == []


def test_long_request_line_is_414_even_before_it_ends():
    served = Served(ok, limits=ServerLimits(max_request_line=100))
    served.send(b"GET /" + b"a" * 200)
    assert served.responses()[0].status == 414


def test_long_request_line_is_414():
    served = Served(ok, limits=ServerLimits(max_request_line=100))
    served.send(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert served.responses()[0].status == 414


def test_header_bytes_over_the_limit_are_431_before_the_head_ends():
    served = Served(ok, limits=ServerLimits(max_header_bytes=1024))
    served.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 2000)
    assert served.responses()[0].status == 431


def test_too_many_headers_are_431():
    served = Served(ok, limits=ServerLimits(max_headers=5))
    served.send(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"Host: a\r\n\r\n")
    assert served.responses()[0].status == 431


def test_identical_duplicate_content_length_is_refused_by_decision():
    """RFC 9112 §6.3 allows merging identical values; llhttp refuses them and so does the engine (documented)."""
    served = Served(ok).send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
    assert served.responses()[0].status == 400


def test_leading_empty_lines_are_ignored():
    served = Served(ok).send(b"\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.status for r in served.responses()] == [200]


def test_trailing_whitespace_is_not_part_of_a_value():
    served = Served().send(b"POST / HTTP/1.1\r\nHost: a \r\nContent-Length: 1 \r\nX-A: b\t\r\n\r\nx")
    request = served.requests[0]
    assert request.headers.raw[b"Host"] == [b"a"]
    assert request.headers.raw[b"X-A"] == [b"b"]
    assert request.received_bytes == 1


def test_upgrade_request_with_a_body_is_framed_by_its_length():
    """llhttp would skip the body of an Upgrade request; the engine reads it, so it is never parsed as a request."""
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    served = Served().send(
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
        + smuggled
    )
    assert [r.target for r in served.requests] == [b"/"]
    assert served.requests[0].received_bytes == len(smuggled)


def test_a_head_trickling_in_byte_by_byte_is_fine():
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 200) for i in range(50)) + b"\r\n"
    served = Served(ok)
    for i in range(len(head)):
        served.send(head[i : i + 1])
    assert [r.status for r in served.responses()] == [200]


def test_a_bare_lf_arriving_late_in_a_partial_head_is_refused_at_once():
    served = Served(ok).send(b"GET / HTTP/1.1\r\nHost: a\r")
    served.send(b"\nX-A: b")
    assert served.output() == b""
    served.send(b"\nX-B: c")
    assert served.responses()[0].status == 400


def test_a_flood_of_empty_lines_is_dropped_and_the_connection_idles_out():
    served = Served(ok, limits=ServerLimits(idle_timeout=5))
    for _ in range(100):
        served.send(b"\r\n" * 1000)
    assert served.output() == b""
    served.clock.advance(5)
    assert served.closed
