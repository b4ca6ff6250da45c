"""
A small answer whose body came in the same read as its head goes to the
client in one `respond` (no body protocol, no producer, no relay), and
nothing observable differs from the same answer streamed: the client's
bytes, the record (access log, metrics), the target's bookkeeping.
"""

from __future__ import annotations

from typing import Any, List

import pytest

import twistgate.exchange_respond as exchange_respond
from tests.seam_wiring import Wired

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
GET = b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n"


@pytest.fixture
def relays(monkeypatch: pytest.MonkeyPatch) -> List[Any]:
    """Every `BodyRelay` the exchange makes."""
    made: List[Any] = []

    class Counted(exchange_respond.BodyRelay):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            made.append(self)
            super().__init__(*args)

    monkeypatch.setattr(exchange_respond, "BodyRelay", Counted)
    return made


def _comparable(record: Any) -> tuple:
    return (
        record.status, record.bytes_out, record.bytes_in, record.attempts, record.upstream_head_seconds,
        record.target, record.upstream, record.client_gone, record.finished - record.started, sorted(record.state),
    )  # fmt: skip


def _steady(answer: bytes) -> bytes:
    """An answer without the fields that differ per request (Date, X-Request-Id)."""
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith((b"Date:", b"X-Request-Id:")))


def _forward(wired: Wired, reads: List[bytes]) -> bytes:
    upstream = wired.send(GET)
    wired.clock.advance(0.25)  # the head's latency, as the record times it
    return wired.answer(upstream, reads)


def test_an_answer_in_one_read_goes_out_in_one_call_and_looks_like_a_streamed_one(relays: List[Any]) -> None:
    wired = Wired()
    whole = _forward(wired, [HEAD + b"hello"])
    assert relays == []  # no body protocol: one respond
    streamed = _forward(wired, [HEAD, b"hel", b"lo"])
    assert len(relays) == 1
    assert whole.startswith(b"HTTP/1.1 200 OK\r\n") and whole.endswith(b"\r\n\r\nhello")
    assert _steady(whole) == _steady(streamed)
    one_call, relayed = wired.records
    assert _comparable(one_call) == _comparable(relayed)
    assert one_call.bytes_out == 5 and one_call.upstream_head_seconds == 0.25
    assert wired.target.in_flight == 0
    assert len(wired.upstreams) == 1  # the connection went back to the pool both times
    assert len(wired.generation.timers) == len(wired.generation.upstreams["app"].timers) == 0  # no read or route timer left


def test_the_one_call_answer_settles_the_breaker_as_a_success(relays: List[Any]) -> None:
    wired = Wired(", circuit_breaker: {failure_threshold: 3}")
    _forward(wired, [b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n\r\nno"])
    breaker = wired.target.breaker
    assert breaker.failures == 1
    _forward(wired, [HEAD + b"hello"])
    assert relays == []
    assert breaker.failures == 0  # the success was recorded when the body was taken whole
    assert wired.target.in_flight == 0


def test_an_answer_split_across_reads_still_streams(relays: List[Any]) -> None:
    wired = Wired()
    upstream = wired.send(GET)
    assert wired.answer(upstream, [HEAD + b"he"]).endswith(b"\r\n\r\nhe")  # the head and what came went out
    assert len(relays) == 1
    assert wired.answer(upstream, [b"llo"]) == b"llo"


def test_a_truncated_answer_in_one_read_is_not_taken_whole(relays: List[Any]) -> None:
    wired = Wired()
    upstream = wired.send(GET)
    upstream.dataReceived(HEAD + b"he")
    upstream.connectionLost(None)
    assert len(relays) == 1
    assert wired.client_wire.value().endswith(b"\r\n\r\nhe")
    assert wired.client_wire.disconnecting  # the client sees the truncation


def test_a_compressed_route_keeps_the_body_path(relays: List[Any]) -> None:
    wired = Wired(route=", compression: {min_size: 1}")
    upstream = wired.send(b"GET /x HTTP/1.1\r\nHost: gw\r\nAccept-Encoding: gzip\r\n\r\n")
    out = wired.answer(upstream, [HEAD + b"hello"])
    assert len(relays) == 1
    assert b"Content-Encoding: gzip" in out


def test_a_head_request_keeps_the_body_path(relays: List[Any]) -> None:
    wired = Wired()
    upstream = wired.send(b"HEAD /x HTTP/1.1\r\nHost: gw\r\n\r\n")
    out = wired.answer(upstream, [HEAD])
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 5\r\n" in out and out.endswith(b"\r\n\r\n")
    assert len(relays) == 1


def test_hop_by_hop_fields_of_a_one_call_answer_never_reach_the_client(relays: List[Any]) -> None:
    wired = Wired()
    upstream = wired.send(GET)
    out = wired.answer(upstream, [
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
        b"Proxy-Authenticate: Basic\r\nContent-Length: 5\r\n\r\nhello"
    ])  # fmt: skip
    assert relays == [] and out.endswith(b"\r\n\r\nhello")
    head = out.split(b"\r\n\r\n")[0].lower()
    assert b"x-secret" not in head and b"keep-alive" not in head and b"proxy-authenticate" not in head


def test_an_empty_body_is_whole_too(relays: List[Any]) -> None:
    wired = Wired()
    whole = _forward(wired, [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    assert relays == [] and whole.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 0\r\n" in whole
    assert whole.endswith(b"\r\n\r\n") and wired.records[0].bytes_out == 0
    assert _forward(wired, [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]).endswith(b"\r\n\r\n")  # the connection was reused
    assert len(wired.upstreams) == 1


def test_an_answer_no_layer_sees_gets_the_gateways_fields_without_a_proxy_response(monkeypatch: pytest.MonkeyPatch) -> None:
    made: List[Any] = []

    class Counted(exchange_respond.ProxyResponse):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            made.append(self)
            super().__init__(*args)

    monkeypatch.setattr(exchange_respond, "ProxyResponse", Counted)
    via = b"1.1 upstream"
    for route in ("", ", compression: {min_size: 100000}"):  # no layer; a layer that sees the answer and leaves it
        wired = Wired(route=route)
        upstream = wired.send(b"GET /x HTTP/1.1\r\nHost: gw\r\nX-Request-Id: req-7\r\n\r\n")
        answer = wired.answer(upstream, [b"HTTP/1.1 200 OK\r\nVia: %s\r\nX-Request-Id: theirs\r\nContent-Length: 2\r\n\r\nok" % via])
        head = answer.split(b"\r\n\r\n")[0].split(b"\r\n")
        assert b"X-Request-Id: req-7" in head and b"X-Request-Id: theirs" not in head
        assert b"Via: %s, %s" % (via, wired.generation.via) in head
        assert b"Date: %s" % wired.generation.http_date() in head  # the upstream sent none
        assert answer.endswith(b"\r\n\r\nok") and wired.records[0].status == 200
    assert len(made) == 1  # only the route with a layer made one
