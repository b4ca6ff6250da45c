"""
`SocketWriter`: a connection's writes, sent straight to its TCP socket
together at the end of the reactor's pass.

Twisted's TCP transport queues every `write` and sends it on the reactor's
next pass, registering the socket for writability and unregistering it
afterwards: two extra epoll calls and a dispatch per response.  This writer
sends through the transport's public `getHandle()` instead, without them.

It does not send at once, though: the writes of one pass wait until the
pass has handled every event it got (`WriteBatch`, one ``callLater(0)`` a
pass), then go out back to back, each connection's as one ``send``.  On
loopback the kernel wakes the receiving process inside the sender's
``send``; when the receiver's CPU is idle that wake-up is an
inter-processor interrupt (on a virtual machine, an exit to the
hypervisor).  Sent at once, a proxy that spends longer on each request
leaves its peers idle between its sends and pays that wake-up on nearly
every one (measured with ``perf``: 1.9 IPIs a request on the full
pipeline); sent together, the peers are woken about once a pass (0.12 a
request), and the system time per request halves (docs/benchmarks.md).

The first time a send cannot take everything, the rest goes to
`transport.write`, and every later write on that connection follows it
there, so bytes never overtake each other; the transport's buffer then
pauses the producers as usual.  Before the connection closes or changes
hands, `flush` sends what waits (`queue_only` does it too).  TLS
transports (whose handle is not a socket) and in-memory ones always use
`transport.write`.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, List, Optional
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IReactorTime

__all__ = ["SocketWriter", "WriteBatch", "peer_closed"]

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class WriteBatch:
    """The writers with bytes waiting in this reactor pass, flushed by one ``callLater(0)``."""

    __slots__ = ("_clock", "_waiting", "__weakref__")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: Optional[List["SocketWriter"]] = None

    def add(self, writer: "SocketWriter") -> None:
        waiting = self._waiting
        if waiting is None:
            self._waiting = [writer]
            self._clock.callLater(0, self._flush)
        else:
            waiting.append(writer)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, None
        for writer in waiting or ():
            writer.flush()


_batches: "WeakKeyDictionary[Any, WriteBatch]" = WeakKeyDictionary()


def batch_for(clock: IReactorTime) -> WriteBatch:
    """The one `WriteBatch` of ``clock`` (the reactor, or a test's `Clock`)."""
    batch = _batches.get(clock)
    if batch is None:
        batch = _batches[clock] = WriteBatch(clock)
    return batch


class SocketWriter:
    __slots__ = ("_send", "_transport", "_batch", "_pending")

    def __init__(self, transport: Any, clock: IReactorTime) -> None:
        self._transport = transport
        get_handle = getattr(transport, "getHandle", None)
        handle = get_handle() if get_handle is not None else None
        self._send: Optional[Callable[[bytes], int]] = handle.send if isinstance(handle, socket.socket) else None
        self._batch = batch_for(clock) if self._send is not None else None
        self._pending: Optional[List[bytes]] = None  # this pass's writes, in order

    def write(self, data: bytes) -> None:
        if self._send is None:
            self._transport.write(data)
            return
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._batch.add(self)  # type: ignore[union-attr]
        else:
            pending.append(data)

    def flush(self) -> None:
        """Send what waits now (the batch's end of the pass, or before a close or hand-over)."""
        pending, self._pending = self._pending, None
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        send = self._send
        if send is not None:
            try:
                sent = send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # closed meanwhile: the transport reports (or ignores) it its own way
            if sent == len(data):
                return
            self._send = None
            data = data[sent:]
        self._transport.write(data)

    def queue_only(self) -> None:
        """From now on, everything goes through the transport (e.g. before handing it to another protocol)."""
        self.flush()
        self._send = None

    def discard(self) -> None:
        """Drop what waits (the connection is being reset: nothing more may reach the peer)."""
        self._pending = None


def peer_closed(transport: Any) -> bool:
    """
    Whether the peer of an idle TCP connection closed it (or sent bytes
    nobody asked for): a non-blocking peek, nothing is read.  Unknown (TLS,
    no socket) counts as open.
    """
    get_handle = getattr(transport, "getHandle", None)
    sock = get_handle() if get_handle is not None else None
    if not isinstance(sock, socket.socket):
        return False
    try:
        sock.recv(1, _PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True
