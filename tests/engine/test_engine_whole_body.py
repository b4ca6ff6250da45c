"""An upstream answer framed by Content-Length is reported at the end of its read: whole when its body came with it."""

from __future__ import annotations

from twisted.web.client import ResponseDone

from tests.engine.engine_fakes import BodyCollector
from tests.engine.test_engine_pool import OK, Setup, result


def test_a_body_in_the_heads_read_comes_whole_and_can_still_be_delivered() -> None:
    setup = Setup()
    d = setup.request()
    setup.answer(OK)
    response = result(d)
    assert response.whole_body == b"ok"
    assert setup.pool.idle_count("k") == 1  # released before the head was reported
    collector = BodyCollector()
    response.deliverBody(collector)  # a body filter's path: the same bytes, then the clean end
    assert collector.data == b"ok" and collector.reason.check(ResponseDone)


def test_a_body_split_across_reads_is_not_whole_and_the_head_comes_with_its_read() -> None:
    setup = Setup()
    d = setup.request()
    setup.answer(OK[:-1])
    response = result(d)  # reported at the end of the head's read, not later
    assert response.whole_body is None
    collector = BodyCollector()
    response.deliverBody(collector)
    setup.answer(OK[-1:])
    assert collector.data == b"ok" and collector.reason.check(ResponseDone)


def test_bodies_without_a_length_or_on_head_are_never_whole() -> None:
    setup = Setup()
    d = setup.request()
    setup.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert result(d).whole_body is None
    d = setup.request(b"HEAD")
    setup.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    assert result(d).whole_body is None
