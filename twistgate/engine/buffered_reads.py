"""
On PyPy, the connections a listener accepts read into one buffer kept for
the process instead of a new 64 KiB string per read.

Twisted's TCP transport reads with ``recv(bufferSize)`` (64 KiB).  PyPy's
``recv(n)`` makes an n-byte string and shrinks it to what arrived, and the
nursery does not get the rest back: each read of a 100-byte request takes
64 KiB of it, as much as the rest of a proxied request allocates, so minor
collections come that much more often, each copying the requests in flight
to the old generation.  `BufferedReadServer` reads with
``recv_into`` a buffer made once and hands the protocol a copy of what
arrived (bench/read_cost.py, minimal route: ~19.9 -> ~17.4 us a request;
~16.3 if the upstream side read this way too; docs/deployment.md, "On
PyPy").  CPython's ``recv`` gives the unused buffer back at once and gains
nothing, so there `buffered_reads` leaves the endpoint as it is (decided
at import).

Twisted's ``tcp.Port`` documents its ``transport`` attribute as the class
to replace for another kind of transport; `buffered_reads` sets it on the
TCP ports a listener's endpoint makes, TLS listeners' too (TLS is a layer
of the protocol there), not on UNIX ones, and not on the upstream side,
whose transports Twisted's connector makes itself: there the connection
reads smaller pieces instead (`twistgate.engine.upstream_reads`).
"""

from __future__ import annotations

import platform
from errno import EWOULDBLOCK
from typing import Any

from twisted.internet import main, tcp
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

__all__ = ["BufferedReadServer", "buffered_reads"]

ON_PYPY = platform.python_implementation() == "PyPy"

#: One buffer for every connection: the reactor reads one socket at a time and the protocol gets a copy.
_BUFFER = bytearray(tcp.Server.bufferSize)
_VIEW = memoryview(_BUFFER)


class BufferedReadServer(tcp.Server):
    """Twisted's accepted TCP connection, reading into the process's buffer (up to its 64 KiB, Twisted's bufferSize)."""

    def doRead(self) -> Any:
        try:
            count = self.socket.recv_into(_BUFFER)
        except OSError as error:
            if error.args[0] == EWOULDBLOCK:
                return None
            return main.CONNECTION_LOST
        if not count:
            return main.CONNECTION_DONE
        return self.protocol.dataReceived(_VIEW[:count].tobytes())


@implementer(IStreamServerEndpoint)
class BufferedReadEndpoint:
    """A server endpoint whose TCP ports accept `BufferedReadServer` connections."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def listen(self, factory: Any) -> Any:
        return self.inner.listen(factory).addCallback(use_buffered_reads)


def use_buffered_reads(port: Any) -> Any:
    """``port``, whose accepted connections are `BufferedReadServer` if it is a plain TCP port."""
    if isinstance(port, tcp.Port) and port.transport is tcp.Server:
        port.transport = BufferedReadServer
    return port


def buffered_reads(endpoint: Any) -> Any:
    """``endpoint``, wrapped on PyPy so its TCP connections read into the process's buffer."""
    return BufferedReadEndpoint(endpoint) if ON_PYPY else endpoint
