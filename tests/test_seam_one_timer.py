"""
While an attempt waits for the head, its read timer stands for the route
timeout too (one timer per request): whichever is due first decides, with
the same 504 and bookkeeping as two timers gave.
"""

from __future__ import annotations

from random import Random

from tests.seam_wiring import Wired

GET = b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def _timers(wired: Wired) -> int:
    return len(wired.generation.timers) + len(wired.generation.upstreams["app"].timers)


def test_one_timer_waits_for_the_head() -> None:
    wired = Wired(", timeouts: {read: 5s}", ", timeout: 2s")
    wired.send(GET)
    assert _timers(wired) == 1


def test_a_route_timeout_shorter_than_the_read_timeout_gives_the_routes_504() -> None:
    wired = Wired(", timeouts: {read: 5s}, circuit_breaker: {failure_threshold: 1}", ", timeout: 2s")
    wired.send(GET)
    wired.clock.advance(1.9)
    assert wired.client_wire.value() == b""
    wired.clock.advance(0.1)
    assert wired.client_wire.value().startswith(b"HTTP/1.1 504 ")
    (record,) = wired.records
    assert (record.status, record.error, record.attempts) == (504, "upstream_timeout", 1)
    target = wired.target
    assert target.last_error is None  # the route's timeout: not the target's failure
    assert target.breaker.state == "closed" and target.in_flight == 0
    assert wired.upstreams[0][1].disconnecting or wired.upstreams[0][0].closing  # the attempt was cancelled
    assert _timers(wired) == 0


def test_a_read_timeout_shorter_than_the_route_timeout_gives_the_reads_504() -> None:
    wired = Wired(", timeouts: {read: 1s}, circuit_breaker: {failure_threshold: 1}", ", timeout: 5s")
    wired.send(GET)
    wired.clock.advance(1)
    assert wired.client_wire.value().startswith(b"HTTP/1.1 504 ")
    (record,) = wired.records
    assert (record.status, record.error, record.attempts) == (504, "upstream_timeout", 1)
    assert wired.target.last_error == "no response head within the read timeout"
    assert wired.target.breaker.state == "open"  # the target's failure, charged
    assert _timers(wired) == 0


def test_the_route_timeout_still_bounds_a_retrys_backoff() -> None:
    wired = Wired(", timeouts: {read: 1s}, retry: {attempts: 2, backoff: 5s, max_backoff: 5s, budget: 100%}", ", timeout: 3s")
    wired.generation.upstreams["app"].rng = Random(0)  # full jitter, seeded: the backoff is 4.2 s
    wired.send(GET)
    wired.clock.advance(1)  # the read timeout: a retry waits for its backoff
    assert wired.client_wire.value() == b""
    assert _timers(wired) == 1  # the route's own, armed for the backoff
    wired.clock.advance(2)
    assert wired.client_wire.value().startswith(b"HTTP/1.1 504 ")
    assert wired.records[0].attempts == 1


def test_the_route_timeout_still_bounds_a_relayed_body() -> None:
    wired = Wired(", timeouts: {read: 10s}", ", timeout: 2s")
    upstream = wired.send(GET)
    wired.clock.advance(1)
    wired.answer(upstream, [ANSWER[:-2]])  # the head and part of the body
    # The route's, armed for the body, and the body's read timer: both on the upstream's timers,
    # whose attempts keep its DelayedCall armed (none made and cancelled per relayed body).
    assert len(wired.generation.upstreams["app"].timers) == 2 and len(wired.generation.timers) == 0
    wired.clock.advance(0.9)
    assert not wired.upstreams[0][1].disconnecting
    wired.clock.advance(0.1)
    protocol, wire = wired.upstreams[0]
    assert wire.disconnecting  # the route timeout cut the upstream body
    protocol.connectionLost(None)
    assert wired.client_wire.disconnecting  # and the client sees the truncation


def test_an_answer_in_time_leaves_no_timer() -> None:
    wired = Wired(", timeouts: {read: 5s}", ", timeout: 2s")
    upstream = wired.send(GET)
    wired.clock.advance(1.5)
    assert wired.answer(upstream, [ANSWER]).endswith(b"hello")
    assert _timers(wired) == 0
    wired.clock.advance(10)
    assert len(wired.records) == 1 and wired.records[0].status == 200
