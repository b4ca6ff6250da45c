"""The upstream client and pool, in memory: framing both ways, reuse rules, stale retries, cancellation."""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from tests.engine.engine_fakes import BodyCollector, FakeEndpoint
from twistgate.engine.errors import ResponseBodyTruncated, UpstreamClosedConnection, UpstreamProtocolError
from twistgate.engine.pool import UpstreamPool
from twistgate.headers import Headers
from twistgate.upstream.body import BytesBody, StreamingBody

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Setup:
    def __init__(self, **kw: Any) -> None:
        self.clock = Clock()
        self.events: List[Any] = []
        self.pool = UpstreamPool(self.clock, on_event=lambda name, key: self.events.append(name), **kw)
        self.endpoint = FakeEndpoint()

    def request(self, method: bytes = b"GET", target: bytes = b"/", headers: Any = None, body: Any = None, **kw: Any) -> Any:
        headers = headers if headers is not None else Headers({b"Host": [b"up"]})
        return self.pool.request("k", self.endpoint, method, target, headers, body, **kw)

    def connection(self, index: int = -1) -> Any:
        return self.endpoint.connections[index]

    def answer(self, data: bytes, index: int = -1) -> None:
        self.connection(index)[0].dataReceived(data)

    def lose(self, index: int = -1) -> None:
        self.connection(index)[0].connectionLost(Failure(ConnectionDone()))


def result(d: Any) -> Any:
    out: List[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        raise AssertionError(f"failed: {out[0].getTraceback()}")
    return out[0]


def failure(d: Any) -> Failure:
    out: List[Any] = []
    d.addBoth(out.append)
    assert out and isinstance(out[0], Failure), out
    return out[0]


def body_of(response: Any) -> BodyCollector:
    collector = BodyCollector()
    response.deliverBody(collector)
    return collector


def test_get_is_written_as_given_and_the_response_streams():
    s = Setup()
    d = s.request(headers=Headers({b"Host": [b"up"], b"X-A": [b"1", b"2"]}))
    assert s.connection()[1].value() == b"GET / HTTP/1.1\r\nHost: up\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
    s.answer(b"HTTP/1.1 201 Made\r\nConnection: keep-alive, X-Hop\r\nContent-Length: 4\r\n\r\nab")
    response = result(d)
    assert (response.code, response.phrase, response.version, response.length) == (201, b"Made", (b"HTTP", 1, 1), 4)
    assert response.headers.raw[b"Connection"] == [b"keep-alive, X-Hop"]  # kept, unlike Twisted's client
    assert response.headers.raw[b"Content-Length"] == [b"4"]
    body = body_of(response)
    s.answer(b"cd")
    assert body.data == b"abcd" and body.reason.check(ResponseDone)
    assert s.pool.idle_count("k") == 1


def test_a_pooled_connection_is_reused():
    s = Setup()
    d = s.request()
    s.answer(OK)
    body_of(result(d))
    s.request(target=b"/2")
    assert len(s.endpoint.connections) == 1
    assert s.connection()[1].value().endswith(b"GET /2 HTTP/1.1\r\nHost: up\r\n\r\n")


@pytest.mark.parametrize("value", [b"close", b"Close", b"CLOSE", b"keep-alive, Close", b"foo,close"])
def test_connection_close_in_any_case_is_never_pooled(value):
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\nConnection: %s\r\nContent-Length: 2\r\n\r\nok" % value)
    body_of(result(d))
    assert s.pool.idle_count("k") == 0
    assert s.connection()[1].disconnecting


def test_http10_persists_only_with_keep_alive():
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    body_of(result(d))
    assert s.pool.idle_count("k") == 0
    d = s.request()
    s.answer(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok")
    body_of(result(d))
    assert s.pool.idle_count("k") == 1


@pytest.mark.parametrize(
    "reads",
    [
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],  # a 1.1 read, a 1.0 answer
        [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        [b"HTTP/1.0 200 OK\r\nContent-", b"Length: 2\r\n\r\nok"],
        [b"\r\nHTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ],
)
def test_the_answer_version_is_its_own_head_s_however_it_arrives(reads):
    """Only the first head of an answer's first read may be taken as HTTP/1.1 from that read's start."""
    s = Setup()
    d = s.request()
    for data in reads:
        s.answer(data)
    response = result(d)
    assert response.version == (b"HTTP", 1, 0)
    body_of(response)
    assert s.pool.idle_count("k") == 0  # HTTP/1.0 without keep-alive


def test_close_delimited_body_ends_with_potential_data_loss_and_is_not_pooled():
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\n\r\nsome")
    response = result(d)
    assert response.length is UNKNOWN_LENGTH
    body = body_of(response)
    s.answer(b" more")
    s.lose()
    assert body.data == b"some more" and body.reason.check(PotentialDataLoss)
    assert s.pool.idle_count("k") == 0


def test_unknown_transfer_coding_is_read_until_close():
    """RFC 9112 §6.3: a response whose final coding is not chunked is delimited by the close."""
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz")
    body = body_of(result(d))
    s.lose()
    assert body.data == b"zzz" and body.reason.check(PotentialDataLoss)


def test_chunked_response_is_decoded():
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    body = body_of(result(d))
    assert body.data == b"abcde" and body.reason.check(ResponseDone)
    assert s.pool.idle_count("k") == 1


def test_truncated_body_fails_the_body():
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    body = body_of(result(d))
    s.lose()
    assert body.reason.check(ResponseBodyTruncated)


def test_body_arriving_before_delivery_is_kept_in_order():
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    response = result(d)
    s.answer(b"cd")
    body = body_of(response)
    assert body.data == b"abcd" and body.reason.check(ResponseDone)


def test_head_response_ends_at_its_head():
    s = Setup()
    d = s.request(method=b"HEAD")
    s.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
    response = result(d)
    body = body_of(response)
    assert body.data == b"" and body.reason.check(ResponseDone)
    assert response.headers.raw[b"Content-Length"] == [b"42"]


def test_interim_responses_reach_on_interim():
    s = Setup()
    seen: List[Any] = []
    d = s.request(on_interim=lambda status, headers: seen.append((status, headers.raw)))
    s.answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
    assert not d.called
    s.answer(OK)
    assert result(d).code == 200
    assert seen == [(100, {}), (103, {b"Link": [b"</s.css>; rel=preload"]})]


def test_101_is_final_and_detaches_the_connection():
    s = Setup()
    d = s.request(headers=Headers({b"Host": [b"up"], b"Connection": [b"Upgrade"], b"Upgrade": [b"websocket"]}))
    s.answer(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframe1")
    response = result(d)
    assert response.code == 101
    relay = BodyCollector()
    response.detach(relay)
    assert relay.producer is s.connection()[1]
    assert relay.data == b"frame1"
    s.answer(b"frame2")
    assert relay.data == b"frame1frame2"
    assert s.pool.idle_count("k") == 0


def test_101_detached_while_its_head_is_reported_keeps_the_connection():
    """A gateway that detaches in the head's own callback (the usual case) keeps the connection open."""
    s = Setup()
    relay = BodyCollector()
    d = s.request(headers=Headers({b"Host": [b"up"], b"Connection": [b"Upgrade"], b"Upgrade": [b"websocket"]}))
    d.addCallback(lambda response: response.detach(relay))
    s.answer(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframe1")
    assert relay.data == b"frame1"
    assert not s.connection()[1].disconnecting
    s.answer(b"frame2")
    assert relay.data == b"frame1frame2"


def test_cancel_before_the_head_aborts_the_connection():
    s = Setup()
    d = s.request()
    d.cancel()
    assert failure(d).check(CancelledError)
    assert s.connection()[1].disconnecting
    s.lose()
    assert s.pool.idle_count("k") == 0


def test_connect_failure_is_the_endpoints_own_error():
    s = Setup()
    s.endpoint.fail_with = ConnectionRefusedError()
    assert failure(s.request()).check(ConnectionRefusedError)


def test_upstream_garbage_is_a_protocol_error():
    s = Setup()
    d = s.request()
    s.answer(b"SMTP ready\r\n\r\n")
    assert failure(d).check(UpstreamProtocolError)


def test_closed_before_any_byte_on_a_fresh_connection_is_not_retried():
    s = Setup()
    d = s.request()
    s.lose()
    f = failure(d)
    assert f.check(UpstreamClosedConnection) and f.value.sent and not f.value.reused
    assert len(s.endpoint.connections) == 1


def _reused(s: Setup) -> None:
    d = s.request()
    s.answer(OK)
    body_of(result(d))


@pytest.mark.parametrize(
    "method, headers, body, retried",
    [
        (b"GET", {}, None, True),
        (b"DELETE", {}, None, True),
        (b"POST", {}, None, False),
        (b"POST", {b"Idempotency-Key": [b"k1"]}, None, True),
        (b"PATCH", {b"X-Idempotency-Key": [b"k1"]}, None, True),
        (b"PUT", {}, BytesBody(b"data"), True),
    ],
)
def test_stale_connection_retry_follows_the_go_rules(method, headers, body, retried):
    s = Setup()
    _reused(s)
    raw = {b"Host": [b"up"], **headers}
    d = s.request(method=method, headers=Headers(raw), body=body)
    s.lose(0)  # the upstream had closed the idle connection: no byte of an answer
    if retried:
        assert s.events == ["stale_retry"]
        assert len(s.endpoint.connections) == 2
        s.answer(OK, 1)
        assert result(d).code == 200
    else:
        assert s.events == ["closed_by_upstream"]
        f = failure(d)
        assert f.check(UpstreamClosedConnection) and f.value.reused and f.value.sent


def test_a_started_body_that_cannot_be_replayed_is_not_retried():
    s = Setup()
    _reused(s)
    body = StreamingBody(4, None)
    body.write(b"data")
    d = s.request(method=b"PUT", body=body)
    s.lose(0)
    assert failure(d).check(UpstreamClosedConnection)


def test_a_kept_streaming_body_is_replayed_from_its_first_byte():
    s = Setup()
    _reused(s)
    body = StreamingBody(4, None)
    body.keep_for_replay(1024)
    body.write(b"da")
    d = s.request(method=b"PUT", body=body)
    s.lose(0)
    body.write(b"ta")
    body.finish()
    assert s.connection(1)[1].value() == b"PUT / HTTP/1.1\r\nHost: up\r\nContent-Length: 4\r\n\r\ndata"
    s.answer(OK, 1)
    assert result(d).code == 200


def test_request_body_goes_out_with_the_head_and_is_chunked_without_length():
    s = Setup()
    body = StreamingBody(None, None)
    body.write(b"first")
    d = s.request(method=b"POST", body=body, headers=Headers({b"Host": [b"up"], b"Content-Length": [b"9"]}))
    transport = s.connection()[1]
    assert transport.value() == b"POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    assert transport.producer is body and transport.streaming
    body.write(b"2nd")
    body.finish()
    assert transport.value().endswith(b"3\r\n2nd\r\n0\r\n\r\n")
    assert transport.producer is None
    s.answer(OK)
    body_of(result(d))
    assert s.pool.idle_count("k") == 1


def test_post_without_body_says_content_length_zero():
    s = Setup()
    s.request(method=b"POST")
    assert s.connection()[1].value() == b"POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 0\r\n\r\n"


def test_an_answer_before_the_body_was_sent_stops_it_and_closes():
    s = Setup()
    body = StreamingBody(100, None)
    d = s.request(method=b"PUT", body=body)
    s.answer(b"HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\n\r\n")
    assert result(d).code == 413
    assert s.connection()[1].disconnecting
    assert s.pool.idle_count("k") == 0


def test_body_producer_pauses_and_stop_closes_the_connection():
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
    body = body_of(result(d))
    transport = s.connection()[1]
    body.producer.pauseProducing()
    assert transport.producerState == "paused"
    body.producer.resumeProducing()
    assert transport.producerState == "producing"
    body.producer.stopProducing()
    assert transport.disconnecting
    s.lose()
    assert body.reason is not None and not body.reason.check(ResponseDone)


def test_idle_connections_expire_and_are_swept():
    s = Setup(idle_timeout=4.0)
    _reused(s)
    s.clock.advance(4.0)
    assert s.connection(0)[1].disconnecting
    s.request()
    assert len(s.endpoint.connections) == 2


def test_an_expired_connection_is_never_taken_even_before_the_sweep():
    s = Setup(idle_timeout=4.0)
    _reused(s)
    s.clock.advance(3.0)
    _reused(s)  # reused once, released again at t=3
    s.clock.advance(3.9)
    s.request()
    assert len(s.endpoint.connections) == 1
    s.answer(OK)
    s.clock.advance(4.0)
    s.request()
    assert len(s.endpoint.connections) == 2


def test_max_idle_per_target_and_max_requests_per_connection():
    s = Setup(max_idle_per_target=1)
    d1, d2 = s.request(), s.request()
    s.answer(OK, 0)
    s.answer(OK, 1)
    body_of(result(d1))
    body_of(result(d2))
    assert s.pool.idle_count("k") == 1
    s = Setup(max_requests_per_connection=2)
    _reused(s)
    _reused(s)
    assert s.pool.idle_count("k") == 0 and len(s.endpoint.connections) == 1


def test_an_idle_connection_closed_by_the_upstream_leaves_the_pool():
    s = Setup()
    _reused(s)
    s.lose(0)
    assert s.pool.idle_count("k") == 0
    assert s.events == ["closed_by_upstream"]


def test_close_closes_idle_connections():
    s = Setup()
    _reused(s)
    d = s.pool.close()
    assert s.connection(0)[1].disconnecting
    s.lose(0)
    result(d)
    assert s.events == []  # closed by us, not by the upstream


def test_a_second_response_nobody_asked_for_closes_the_connection():
    """An upstream answering twice must not poison the next request on the connection."""
    s = Setup()
    d = s.request()
    s.answer(OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!")
    body = body_of(result(d))
    assert body.data == b"ok"
    assert s.pool.idle_count("k") == 0 and s.connection()[1].disconnecting


def test_trailing_bytes_arriving_later_on_an_idle_connection_close_it():
    s = Setup()
    _reused(s)
    s.answer(b"junk", 0)
    assert s.connection(0)[1].disconnecting
    s.request()
    assert len(s.endpoint.connections) == 2  # the aborted one is not taken, even before its connectionLost


def test_a_pooled_connection_whose_peer_closed_is_skipped_after_a_peek():
    import socket

    s = Setup()
    _reused(s)
    mine, theirs = socket.socketpair()
    mine.setblocking(False)
    s.connection(0)[1].getHandle = lambda: mine  # the StringTransport now has a socket behind it
    theirs.close()  # the upstream closed while idle; its FIN is there, the reactor has not told us yet
    s.clock.advance(1.0)
    s.request()
    assert len(s.endpoint.connections) == 2 and s.connection(0)[1].disconnecting
    assert s.events == ["closed_by_upstream"]
    mine.close()


def test_a_busy_connection_is_not_peeked_at():
    s = Setup()
    _reused(s)
    s.connection(0)[1].getHandle = lambda: (_ for _ in ()).throw(AssertionError("peeked"))
    s.request()  # reused within 5 ms: no peek
    assert len(s.endpoint.connections) == 1


def test_a_connection_idle_for_less_than_a_keep_alive_timeout_is_not_peeked_at():
    """A busy pool (many connections in flight) leaves each idle for milliseconds: no syscall per request."""
    s = Setup()
    _reused(s)
    s.connection(0)[1].getHandle = lambda: (_ for _ in ()).throw(AssertionError("peeked"))
    s.clock.advance(0.05)
    s.request()
    assert len(s.endpoint.connections) == 1


def test_trailer_fields_of_one_response_never_become_fields_of_the_next():
    """llhttp reports a chunked body's trailer fields as fields: they must not reach the next answer on the connection."""
    s = Setup()
    d = s.request()
    s.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nSet-Cookie: session=theirs\r\n\r\n")
    assert body_of(result(d)).data == b"ok"
    d = s.request(target=b"/2")
    assert len(s.endpoint.connections) == 1  # the same connection, reused
    s.answer(OK)
    response = result(d)
    assert response.headers.raw == {b"Content-Length": [b"2"]}
