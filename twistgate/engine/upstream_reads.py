"""
On PyPy, an upstream connection reads 16 KiB at a time unless a large body
is on its way.

PyPy's ``recv(n)`` takes n bytes of nursery whatever arrives (see
`twistgate.engine.buffered_reads`, which reads the listener's connections
into a kept buffer instead).  The upstream side's TCP transports are made
by Twisted's connector, which has no public way to choose their class, so
`SmallReadsClientProtocol` sets the public ``bufferSize`` of its transport
(``abstract.FileDescriptor.bufferSize``, what ``doRead`` asks for): 16 KiB
while a request without a body and its answer's head (and a body up to 16
KiB) are read, Twisted's 64 KiB again from a response head announcing a
longer, chunked or until-close body, while a request body is sent
(``bufferSize`` is also where the transport pauses its producer), and
after a 101 hands the connection to a tunnel.  Each request sets it again.

A large body must not reach the client in two pieces from two reactor
passes, the first one shorter than loopback's segment (64 KiB): the
client's kernel delays its ACK of such a piece, and Nagle's algorithm holds
the second one until that ACK (40 ms: 64 KiB answers fell from ~15,900 to
~1,100 a second).  So when a full 16 KiB read brought a head announcing a
large body, the connection reads the rest at once, in the same pass
(``doRead``, the transport's `IReadDescriptor` method), and the client's
writer sends both pieces together as it did with one 64 KiB read.

TLS connections are left as they are: there the protocol's transport is
the TLS layer, whose reads of the TCP transport below do not line up with
what reaches the protocol.  CPython's ``recv`` gives the unused buffer
back at once and gains nothing: there the pool builds
`HTTP1ClientProtocol` itself (`CLIENT_PROTOCOL`, decided at import).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.engine.buffered_reads import ON_PYPY
from twistgate.engine.http1_client import HTTP1ClientProtocol

__all__ = ["CLIENT_PROTOCOL", "SMALL_READ", "LARGE_READ", "SmallReadsClientProtocol", "tcp_transport"]

#: Bytes a read asks for while a small answer is expected: a head and a small body.
SMALL_READ = 16384
#: Twisted's own read size (and producer pause threshold), for large bodies, request bodies and tunnels.
LARGE_READ = FileDescriptor.bufferSize


def tcp_transport(transport: Any) -> Any:
    """``transport`` if its ``bufferSize`` sets its read size (a TCP one, not a TLS layer), else None."""
    # The class's: a TLS layer's instances hand attribute reads to the transport below.
    return transport if isinstance(getattr(type(transport), "bufferSize", None), int) else None


class SmallReadsClientProtocol(HTTP1ClientProtocol):
    """`HTTP1ClientProtocol` reading `SMALL_READ` bytes at a time unless a large body is on its way."""

    reads: Any = None  # the transport whose bufferSize this sets (None: leave reads as they are)
    read_rest = False  # a full small read brought a large body's head: read the rest in this pass

    def connectionMade(self) -> None:
        super().connectionMade()
        self.reads = tcp_transport(self.transport)

    def send(self, request: Any, reused: bool) -> None:
        reads = self.reads
        if reads is not None:
            reads.bufferSize = SMALL_READ if request.payload is None else LARGE_READ
        super().send(request, reused)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        reads, response = self.reads, self._response
        if reads is not None and response is not None:
            length = response.length
            if length is UNKNOWN_LENGTH or length > SMALL_READ:
                reads.bufferSize = LARGE_READ
                self.read_rest = self._read_size == SMALL_READ

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.read_rest:
            self.read_rest = False
            if not (self.closing or self._paused):
                # A closed or reset socket is reported again on the reactor's next pass.
                self.reads.doRead()

    def detach(self, protocol: Any) -> None:
        reads = self.reads
        if reads is not None:
            reads.bufferSize = LARGE_READ
        super().detach(protocol)


#: The protocol the pool builds for each upstream connection.
CLIENT_PROTOCOL = SmallReadsClientProtocol if ON_PYPY else HTTP1ClientProtocol
