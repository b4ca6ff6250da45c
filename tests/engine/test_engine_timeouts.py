"""The server's three client timeouts on an injected clock: request head, request body, idle keep-alive."""

from __future__ import annotations

from tests.engine.engine_fakes import Served, ok
from twistgate.engine import ServerLimits

LIMITS = ServerLimits(header_timeout=10, body_timeout=30, idle_timeout=300)


def test_a_slow_request_head_gets_408_and_close():
    served = Served(ok, limits=LIMITS).send(b"GET / HTTP/1.1\r\nHost")
    served.clock.advance(9.9)
    served.send(b": a\r\n")  # more bytes do not restart the clock: it runs from the first byte
    assert served.output() == b""
    served.clock.advance(0.2)
    reply = served.responses()[0]
    assert reply.status == 408 and reply.header(b"Connection") == b"close"
    assert served.closed


def test_header_timeout_runs_from_the_first_byte_of_each_head():
    served = Served(ok, limits=LIMITS).send(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
    served.clock.advance(200)  # idle between requests is not head time
    served.send(b"GET /2 HTTP/1.1\r\n")
    served.clock.advance(9)
    served.send(b"Host: a\r\n\r\n")
    assert [r.status for r in served.responses()] == [200, 200]


def test_a_stalled_body_gets_408_and_close():
    served = Served(limits=LIMITS)
    failures = []
    served.send(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    served.requests[0].notify_finish().addErrback(failures.append)
    served.clock.advance(29)
    served.send(b"def")  # a byte restarts the body clock
    served.clock.advance(29)
    assert served.output() == b""
    served.clock.advance(1.5)
    assert served.responses()[0].status == 408 and served.closed
    assert failures and failures[0].value.status == 408


def test_the_body_clock_stops_while_the_gateway_is_not_reading():
    served = Served(limits=ServerLimits(body_timeout=30, max_request_body=10_000_000))
    served.send(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100_000)
    assert served.transport.producerState == "paused"  # nobody consumes the body yet
    served.clock.advance(100)
    assert served.output() == b""


def test_idle_keep_alive_connections_close_silently():
    served = Served(ok, limits=LIMITS).send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    answered = served.output()
    served.clock.advance(299)
    assert not served.closed
    served.clock.advance(2)
    assert served.closed and served.output() == answered


def test_a_fresh_connection_without_a_request_is_idle_too():
    served = Served(ok, limits=LIMITS)
    served.clock.advance(301)
    assert served.closed and served.output() == b""


def test_no_timeout_while_the_response_is_being_written():
    served = Served(limits=LIMITS).send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    served.clock.advance(1000)
    assert not served.closed
    served.requests[0].respond(200, None, served.requests[0].headers.__class__(), b"late")
    assert served.responses()[0].body == b"late"
