"""The HTTP/1.1 server's behaviour: responses, keep-alive, pipelining, HTTP/1.0, 1xx, upgrades, flow control."""

from __future__ import annotations

from typing import Any, List

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from tests.engine.engine_fakes import Served, ok
from twistgate.engine import REASONS, ServerLimits, reason_for
from twistgate.headers import Headers

GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"


def test_respond_is_one_write_with_content_length():
    writes: List[bytes] = []
    served = Served(lambda r: r.respond(200, None, Headers({b"X-A": [b"1"]}), b"hello"))
    served.transport.write = writes.append  # type: ignore[method-assign]
    served.send(GET)
    assert writes == [b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"]
    assert not served.closed


def test_the_request_object():
    served = Served().send(b"PUT /p/q?a=1&b HTTP/1.1\r\nHost: h\r\nX-M: 1\r\nx-m: 2\r\nContent-Length: 3\r\n\r\nabc")
    request = served.requests[0]
    assert (request.method, request.target, request.path, request.query) == (b"PUT", b"/p/q?a=1&b", b"/p/q", b"a=1&b")
    assert request.version == b"HTTP/1.1"
    assert request.headers.raw == {b"Host": [b"h"], b"X-M": [b"1", b"2"], b"Content-Length": [b"3"]}
    assert request.client == ("192.0.2.7", 4711)
    assert request.secure is False and request.transport is served.transport
    assert request.keep_alive and not request.expects_continue
    assert request.received_bytes == 3 and request.body_complete
    assert request.code is None and not request.started_writing and not request.finished


def test_query_is_empty_without_question_mark():
    request = Served().send(GET).requests[0]
    assert request.query == b"" and request.body is None


def test_reason_phrases_come_from_one_table():
    assert REASONS[429] == b"Too Many Requests" and REASONS[308] == b"Permanent Redirect"
    assert REASONS[421] == b"Misdirected Request" and REASONS[425] == b"Too Early"
    assert REASONS[431] == b"Request Header Fields Too Large" and REASONS[103] == b"Early Hints"
    assert reason_for(499) == b"Client Error"
    served = Served(lambda r: r.respond(429, None, Headers(), b""))
    assert served.send(GET).output().startswith(b"HTTP/1.1 429 Too Many Requests\r\n")


def test_a_given_reason_is_kept():
    served = Served(lambda r: r.respond(299, b"Custom Reason", Headers(), b""))
    assert served.send(GET).output().startswith(b"HTTP/1.1 299 Custom Reason\r\n")


def test_keep_alive_serves_requests_in_turn():
    served = Served(ok).send(GET).send(b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.body for r in served.responses()] == [b"/x", b"/y"]
    assert not served.closed


def test_connection_close_from_the_client_closes_after_the_answer():
    served = Served(ok).send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n")
    assert served.responses()[0].header(b"Connection") == b"close"
    assert served.closed


def test_gateway_can_close_after_a_response():
    def close(request):
        request.keep_alive = False
        request.respond(200, None, Headers(), b"")

    served = Served(close).send(GET)
    assert served.responses()[0].header(b"Connection") == b"close" and served.closed


def test_pipelined_requests_wait_for_the_previous_response():
    served = Served()
    served.send(GET + b"GET /second HTTP/1.1\r\nHost: a\r\n\r\nGET /third HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.target for r in served.requests] == [b"/x"]
    served.requests[0].respond(200, None, Headers(), b"1")
    assert [r.target for r in served.requests] == [b"/x", b"/second"]
    served.requests[1].write_head(200, None, Headers())
    served.requests[1].write(b"2")
    assert len(served.requests) == 2
    served.requests[1].finish()
    served.requests[2].respond(200, None, Headers(), b"3")
    assert [r.body for r in served.responses()] == [b"1", b"2", b"3"]


def test_pipelined_bytes_beyond_the_buffer_pause_the_client():
    served = Served()
    pad = b"p" * 35000
    served.send(GET + b"GET /next HTTP/1.1\r\nHost: a\r\nX-Pad: %s\r\n\r\nGET /last HTTP/1.1\r\nHost: a\r\nX-Pad: %s\r\n\r\n" % (pad, pad))
    assert served.transport.producerState == "paused"
    served.requests[0].respond(200, None, Headers(), b"")
    assert served.transport.producerState == "producing"
    assert [r.target for r in served.requests] == [b"/x", b"/next"]


def test_a_bad_request_after_a_good_one_is_answered_in_order():
    served = Served()
    served.send(GET + b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert served.output() == b""
    served.requests[0].respond(200, None, Headers(), b"ok")
    assert [r.status for r in served.responses()] == [200, 400]
    assert served.closed


def test_http10_closes_by_default_and_keeps_alive_when_asked():
    served = Served(ok).send(b"GET /a HTTP/1.0\r\n\r\n")
    assert served.output().startswith(b"HTTP/1.0 200 OK\r\n") and served.closed
    served = Served(ok).send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert served.responses()[0].header(b"Connection") == b"keep-alive" and not served.closed


def test_streaming_on_http10_is_close_delimited():
    def stream(request):
        request.write_head(200, None, Headers())
        request.write(b"abc")
        request.finish()

    served = Served(stream).send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert served.output() == b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nabc"
    assert served.closed


def test_streaming_without_length_is_chunked_and_head_goes_with_first_bytes():
    writes: List[Any] = []
    served = Served()
    served.send(GET)
    request = served.requests[0]
    request.write_head(200, None, Headers({b"Content-Type": [b"text/plain"]}))
    assert served.output() == b""
    served.transport.write = lambda data: writes.append(data)  # type: ignore[method-assign]
    served.transport.writeSequence = lambda seq: writes.append(b"".join(seq))  # type: ignore[method-assign]
    request.write(b"hello")
    request.write(b" world")
    request.finish()
    assert writes == [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"6\r\n world\r\n",
        b"0\r\n\r\n",
    ]


def test_streaming_with_content_length_passes_it_on():
    def stream(request):
        request.write_head(200, None, Headers({b"Content-Length": [b"6"]}))
        request.write(b"abc")
        request.write(b"def")
        request.finish()

    served = Served(stream).send(GET)
    assert served.output() == b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef"
    assert not served.closed


def test_a_body_shorter_than_its_content_length_closes_the_connection():
    def short(request):
        request.write_head(200, None, Headers({b"Content-Length": [b"6"]}))
        request.write(b"abc")
        request.finish()

    assert Served(short).send(GET).closed


def test_finish_without_writes_is_an_empty_body_with_length():
    def empty(request):
        request.write_head(200, None, Headers())
        request.finish()

    assert Served(empty).send(GET).output() == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_no_body_for_head_204_304_and_head_keeps_content_length():
    def answer(status, length):
        def handler(request):
            request.write_head(status, None, Headers({b"Content-Length": [length]}))
            request.write(b"ignored")
            request.finish()

        return handler

    assert Served(answer(200, b"42")).send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").output() == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"
    )
    assert Served(answer(304, b"42")).send(GET).output() == b"HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n"
    assert Served(answer(204, b"42")).send(GET).output() == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_engine_owns_connection_and_transfer_encoding_fields():
    def handler(request):
        request.respond(200, None, Headers({b"Connection": [b"close"], b"Transfer-Encoding": [b"chunked"]}), b"x")

    served = Served(handler).send(GET)
    assert served.output() == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"


def test_abort_leaves_a_chunked_response_visibly_truncated():
    def handler(request):
        request.write_head(200, None, Headers())
        request.write(b"part")
        request.abort()

    served = Served(handler).send(GET)
    assert served.output().endswith(b"4\r\npart\r\n")
    assert served.transport.disconnected  # aborted


def test_notify_finish_fires_when_written_and_fails_when_the_client_left():
    done: List[Any] = []
    served = Served().send(GET)
    request = served.requests[0]
    request.notify_finish().addBoth(done.append)
    request.respond(200, None, Headers(), b"")
    assert done == [None]
    served = Served().send(GET)
    request = served.requests[0]
    request.notify_finish().addBoth(done.append)
    served.protocol.connectionLost(Failure(ConnectionDone()))
    assert isinstance(done[-1], Failure) and request.finished


def test_finish_callbacks_run_in_the_order_given_and_a_failing_one_stops_none_after_it() -> None:
    calls: List[Any] = []
    served = Served().send(GET)
    request = served.requests[0]
    request.when_finished(lambda outcome: calls.append(("first", outcome)))
    request.notify_finish().addBoth(lambda outcome: calls.append(("deferred", outcome)))
    request.when_finished(lambda outcome: 1 / 0)
    request.when_finished(lambda outcome: calls.append(("last", outcome)))
    request.respond(200, None, Headers(), b"")
    assert calls == [("first", None), ("deferred", None), ("last", None)]
    request.when_finished(lambda outcome: calls.append(("late", outcome)))  # over already: at once
    assert calls[-1] == ("late", None)
    served = Served().send(GET)
    request = served.requests[0]
    request.when_finished(calls.append)
    request.when_finished(calls.append)
    served.protocol.connectionLost(Failure(ConnectionDone()))
    assert isinstance(calls[-1], Failure) and calls[-1] is calls[-2]


def test_writes_after_finish_are_ignored():
    served = Served(ok).send(GET)
    request = served.requests[0]
    before = served.output()
    request.write(b"late")
    request.finish()
    request.respond(500, None, Headers(), b"")
    assert served.output() == before


def test_connection_counts():
    served = Served(ok)
    served.protocol.connectionLost(Failure(ConnectionDone()))
    assert served.counts == [1, -1]


def test_handler_exception_is_a_500_json_answer():
    def broken(request):
        raise RuntimeError("boom")

    served = Served(broken).send(GET)
    reply = served.responses()[0]
    assert reply.status == 500 and b"internal_error" in reply.body and b"boom" not in reply.body
    assert served.closed


# -- 1xx ---------------------------------------------------------------------------


def test_100_continue_is_sent_once_and_then_the_body_streams():
    served = Served().send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    request = served.requests[0]
    assert request.expects_continue and served.output() == b""
    request.send_interim(100)
    request.send_interim(100)
    assert served.output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    served.send(b"hello")
    assert request.body_complete and request.received_bytes == 5
    request.respond(200, None, Headers(), b"ok")
    assert not served.closed


def test_answer_without_100_closes_when_the_body_was_not_read():
    served = Served().send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    served.requests[0].respond(401, None, Headers(), b"no")
    reply = served.responses()[0]
    assert reply.status == 401 and reply.header(b"Connection") == b"close"
    assert served.closed


def test_no_100_after_the_final_response_started_nor_on_http10():
    served = Served().send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    request = served.requests[0]
    request.write_head(200, None, Headers())
    request.write(b"x")
    request.send_interim(100)
    assert b"100 Continue" not in served.output()
    served = Served().send(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    served.requests[0].send_interim(100)
    served.requests[0].send_interim(103, Headers({b"Link": [b"</a>"]}))
    assert served.output() == b""


def test_103_early_hints_go_before_the_answer():
    def hints(request):
        request.send_interim(103, Headers({b"Link": [b"</s.css>; rel=preload"]}))
        request.respond(200, None, Headers(), b"ok")

    served = Served(hints).send(GET)
    assert served.output().startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n")


# -- upgrades and flow control ------------------------------------------------------


class Echo(Protocol):
    def __init__(self) -> None:
        self.seen = b""
        self.lost = None

    def dataReceived(self, data: bytes) -> None:
        self.seen += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason


def test_take_over_hands_the_connection_and_early_bytes_to_a_protocol():
    echo = Echo()

    def upgrade(request):
        request.write_head(101, None, Headers({b"Connection": [b"Upgrade"], b"Upgrade": [b"websocket"]}))
        request.take_over(echo)

    served = Served(upgrade)
    served.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly")
    assert served.output() == b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert echo.transport is served.transport and echo.seen == b"early"
    served.send(b"GET / HTTP/1.1\r\n\r\n")  # no longer HTTP
    assert echo.seen == b"earlyGET / HTTP/1.1\r\n\r\n"
    served.protocol.connectionLost(Failure(ConnectionDone()))
    assert echo.lost is not None


@implementer(IPushProducer)
class Producer:
    def __init__(self) -> None:
        self.state = "producing"

    def pauseProducing(self) -> None:
        self.state = "paused"

    def resumeProducing(self) -> None:
        self.state = "producing"

    def stopProducing(self) -> None:
        self.state = "stopped"


def test_a_full_client_socket_pauses_the_registered_producer():
    served = Served().send(GET)
    request = served.requests[0]
    producer = Producer()
    request.register_producer(producer)
    flow = served.transport.producer  # what the transport pauses when its buffer fills
    flow.pauseProducing()
    assert producer.state == "paused"
    flow.resumeProducing()
    assert producer.state == "producing"
    flow.pauseProducing()
    late = Producer()
    request.register_producer(late)
    assert late.state == "paused"  # registered while the socket is full


def test_a_slow_upstream_pauses_the_client_upload():
    served = Served(limits=ServerLimits(max_request_body=10_000_000))
    served.send(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
    served.send(b"x" * 100_000)  # nobody consumes the body yet
    assert served.transport.producerState == "paused"


def test_closing_unregisters_the_write_flow_so_the_transport_really_closes():
    """A transport with a paused producer would resume it instead of closing once drained."""
    served = Served(ok)
    served.transport.producer.pauseProducing()  # the client socket was full
    served.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert served.closed and served.transport.producer is None


def test_head_answered_with_respond_announces_the_get_length():
    served = Served(lambda r: r.respond(200, None, Headers(), b"12345"))
    assert served.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").output() == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"


def test_no_100_once_the_body_is_complete():
    served = Served().send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
    served.requests[0].send_interim(100)
    assert served.output() == b""


def test_an_unusable_content_length_from_the_handler_is_replaced_by_chunking():
    def handler(request):
        request.write_head(200, None, Headers({b"Content-Length": [b"12x"]}))
        request.write(b"abc")
        request.finish()

    assert Served(handler).send(GET).output() == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
