"""Sending at once when nothing is queued, and peeking at idle connections (socket pairs, no reactor)."""

from __future__ import annotations

import socket
from typing import Any, List

from twistgate.engine.writer import SocketWriter, peer_closed


class Transport:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.queued: List[bytes] = []

    def getHandle(self) -> Any:
        return self.sock

    def write(self, data: bytes) -> None:
        self.queued.append(bytes(data))


def test_sends_at_once_then_queues_everything_after_a_short_send():
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = Transport(a)
    writer = SocketWriter(transport)
    writer.write(b"head")
    assert b.recv(10) == b"head" and transport.queued == []
    big = b"x" * 10_000_000
    writer.write(big)  # more than the socket takes: the rest is queued, in order
    writer.write(b"tail")
    assert transport.queued[-1] == b"tail" and len(transport.queued) == 2
    assert 0 < len(transport.queued[0]) < len(big)
    a.close()
    b.close()


def test_transports_without_a_socket_always_queue():
    transport = Transport(object())
    SocketWriter(transport).write(b"data")
    assert transport.queued == [b"data"]


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
