"""A reactor pass's writes sent together at its end, and peeking at idle connections (socket pairs, a `Clock`)."""

from __future__ import annotations

import socket
from typing import Any, List

from twisted.internet.task import Clock

from twistgate.engine.writer import SocketWriter, batch_for, peer_closed


class Transport:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.queued: List[bytes] = []

    def getHandle(self) -> Any:
        return self.sock

    def write(self, data: bytes) -> None:
        self.queued.append(bytes(data))


def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def received(sock: Any) -> bytes:
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_a_pass_s_writes_wait_for_its_end_then_go_as_one_send():
    clock = Clock()
    a, b = pair()
    c, d = pair()
    first, second = SocketWriter(Transport(a), clock), SocketWriter(Transport(c), clock)
    first.write(b"GET / HTTP/1.1\r\n")
    second.write(b"HTTP/1.1 200 OK\r\n")
    first.write(b"Host: a\r\n\r\n")
    assert received(b) == b"" and received(d) == b""  # nothing before the end of the pass
    assert len(clock.getDelayedCalls()) == 1  # one flush for every writer of the pass
    clock.advance(0)
    assert received(b) == b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert received(d) == b"HTTP/1.1 200 OK\r\n"
    assert clock.getDelayedCalls() == []
    first.write(b"next")  # a new pass: a new flush
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert received(b) == b"next"
    for sock in (a, b, c, d):
        sock.close()


def test_a_short_send_queues_the_rest_and_everything_after_it_in_order():
    clock = Clock()
    a, b = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = Transport(a)
    writer = SocketWriter(transport, clock)
    big = b"x" * 10_000_000
    writer.write(b"head")
    writer.write(big)  # more than the socket takes: the rest goes to the transport
    clock.advance(0)
    writer.write(b"tail")  # later writes follow at once, never overtaking
    assert len(transport.queued) == 2 and transport.queued[-1] == b"tail"
    assert 0 < len(transport.queued[0]) < len(big) + 4
    assert clock.getDelayedCalls() == []
    a.close()
    b.close()


def test_flush_before_a_close_and_queue_only_before_a_hand_over():
    clock = Clock()
    a, b = pair()
    transport = Transport(a)
    writer = SocketWriter(transport, clock)
    writer.write(b"last answer")
    writer.flush()  # what a close does first
    assert received(b) == b"last answer"
    writer.write(b"101 head")
    writer.queue_only()  # before another protocol takes the transport
    assert received(b) == b"101 head"
    writer.write(b"frame")
    assert transport.queued == [b"frame"]  # the new owner's order: the transport's
    clock.advance(0)  # the pass's flush finds nothing left
    assert received(b) == b""
    a.close()
    b.close()


def test_discard_drops_what_waits_before_a_reset():
    clock = Clock()
    a, b = pair()
    writer = SocketWriter(Transport(a), clock)
    writer.write(b"half an answer")
    writer.discard()
    clock.advance(0)
    assert received(b) == b""
    a.close()
    b.close()


def test_a_write_to_a_closed_socket_goes_to_the_transport():
    clock = Clock()
    a, b = pair()
    transport = Transport(a)
    writer = SocketWriter(transport, clock)
    writer.write(b"late")
    a.close()  # the connection went away within the pass
    clock.advance(0)
    assert transport.queued == [b"late"]  # the transport drops it its own way
    b.close()


def test_one_batch_per_clock():
    clock = Clock()
    assert batch_for(clock) is batch_for(clock)
    assert batch_for(clock) is not batch_for(Clock())


def test_transports_without_a_socket_always_queue():
    clock = Clock()
    transport = Transport(object())
    SocketWriter(transport, clock).write(b"data")
    assert transport.queued == [b"data"]  # at once: nothing waits for a pass
    assert clock.getDelayedCalls() == []


def test_peer_closed_peeks_without_reading():
    a, b = socket.socketpair()
    a.setblocking(False)
    transport = Transport(a)
    assert not peer_closed(transport)
    b.send(b"x")
    assert peer_closed(transport)  # bytes nobody asked for
    assert a.recv(1) == b"x"  # still there: only peeked
    b.close()
    assert peer_closed(transport)
    a.close()
    assert not peer_closed(Transport(None))
