"""
`SocketWriter`: write to a TCP socket at once when nothing is queued.

Twisted's TCP transport queues every `write` and sends it on the reactor's
next pass, registering the socket for writability and unregistering it
afterwards: two extra epoll calls and a dispatch per response.  asyncio
and uvloop send at once when their buffer is empty; so does this, through
the transport's public `getHandle()`.  The first time a send cannot take
everything, the rest goes to `transport.write` and every later write on
that connection follows it there, so bytes never overtake each other.  TLS
transports (whose handle is not a socket) always use `transport.write`.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Optional

__all__ = ["SocketWriter", "peer_closed"]

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class SocketWriter:
    __slots__ = ("_send", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        get_handle = getattr(transport, "getHandle", None)
        handle = get_handle() if get_handle is not None else None
        self._send: Optional[Callable[[bytes], int]] = handle.send if isinstance(handle, socket.socket) else None

    def write(self, data: bytes) -> None:
        send = self._send
        if send is not None:
            try:
                sent = send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the transport reports the error its own way
            if sent == len(data):
                return
            self._send = None
            data = data[sent:]
        self._transport.write(data)

    def queue_only(self) -> None:
        """From now on, everything goes through the transport (e.g. before handing it to another protocol)."""
        self._send = None


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
