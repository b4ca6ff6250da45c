"""PyPy's accepted connections read into one kept buffer (socket pairs, a `MemoryReactor`, a listening port on loopback)."""

from __future__ import annotations

import socket
from typing import List

from twisted.internet import main, tcp
from twisted.internet.defer import succeed
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor

from twistgate.engine import buffered_reads
from twistgate.engine.buffered_reads import BufferedReadServer, buffered_reads as wrap, use_buffered_reads


class Collect(Protocol):
    def __init__(self) -> None:
        self.chunks: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)


def connection():
    """(the peer's socket, a `BufferedReadServer` on the other end, its protocol)."""
    peer, mine = socket.socketpair()
    mine.setblocking(False)
    protocol = Collect()
    server = BufferedReadServer(mine, protocol, ("127.0.0.1", 40000), None, 1, MemoryReactor())
    protocol.makeConnection(server)
    return peer, server, protocol


def test_each_read_hands_the_protocol_its_own_copy_of_what_arrived():
    peer, server, protocol = connection()
    peer.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert server.doRead() is None
    peer.sendall(b"x" * 70000)  # more than one read's worth
    while sum(map(len, protocol.chunks)) < 18 + 70000:
        assert server.doRead() is None
    assert protocol.chunks[0] == b"GET / HTTP/1.1\r\n\r\n"  # not overwritten by the reads after it
    assert b"".join(protocol.chunks[1:]) == b"x" * 70000
    assert all(type(chunk) is bytes for chunk in protocol.chunks)
    assert server.doRead() is None  # nothing waiting: EWOULDBLOCK, the connection stays
    peer.close()
    assert server.doRead() is main.CONNECTION_DONE
    server.socket.close()


def test_a_reset_connection_is_lost():
    peer, server, protocol = connection()
    server.socket.send(b"unread")
    peer.close()  # with bytes it never read: a reset
    assert server.doRead() is main.CONNECTION_LOST
    assert protocol.chunks == []
    server.socket.close()


def test_only_plain_tcp_ports_get_buffered_reads():
    port = tcp.Port(0, None, reactor=MemoryReactor())
    assert use_buffered_reads(port) is port and port.transport is BufferedReadServer

    class OtherServer(tcp.Server):
        pass

    other = tcp.Port(0, None, reactor=MemoryReactor())
    other.transport = OtherServer  # someone else's choice stays
    use_buffered_reads(other)
    assert other.transport is OtherServer
    not_a_port = object()
    assert use_buffered_reads(not_a_port) is not_a_port


class Endpoint:
    def __init__(self, port: object) -> None:
        self.port = port

    def listen(self, factory: object):
        return succeed(self.port)


def test_on_pypy_the_endpoint_is_wrapped_and_its_port_reads_into_the_buffer(monkeypatch):
    monkeypatch.setattr(buffered_reads, "ON_PYPY", True)
    port = tcp.Port(0, None, reactor=MemoryReactor())
    listened: List[object] = []
    wrap(Endpoint(port)).listen(None).addCallback(listened.append)
    assert listened == [port] and port.transport is BufferedReadServer


def test_on_cpython_the_endpoint_is_left_as_it_is(monkeypatch):
    monkeypatch.setattr(buffered_reads, "ON_PYPY", False)
    endpoint = Endpoint(tcp.Port(0, None, reactor=MemoryReactor()))
    assert wrap(endpoint) is endpoint
    assert endpoint.port.transport is tcp.Server
