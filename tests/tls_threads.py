"""
Which threads use a TLS client's connections.

One `ssl` connection must never be read in one thread while another thread
writes it: OpenSSL's ``SSL`` objects are not thread-safe.  The `websockets`
sync client does exactly that (its reader thread sits in ``recv()`` while the
caller sends), and on PyPy (7.3.11, OpenSSL 3.0) about 1 in 1,000 of its
upgrade requests went nowhere: ``sendall`` returned, the kernel never saw a
byte (``ss``: 597 bytes sent, the TLS handshake alone), the client waited for
a 101 to a request that was never sent.  `tls_threads` lets a test check
that its TLS client keeps each connection on one thread.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any, Set

__all__ = ["tls_threads"]


def tls_threads(context: ssl.SSLContext) -> Set[int]:
    """
    From now on, every connection of ``context`` (sockets and memory-BIO
    objects, as asyncio uses) notes the thread of each read and write in
    the set returned.
    """
    threads: Set[int] = set()

    class Socket(ssl.SSLSocket):
        def read(self, *args: Any, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return super().read(*args, **kwargs)

        def send(self, *args: Any, **kwargs: Any) -> Any:  # sendall sends through it
            threads.add(threading.get_ident())
            return super().send(*args, **kwargs)

    class Object(ssl.SSLObject):
        def read(self, *args: Any, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return super().read(*args, **kwargs)

        def write(self, *args: Any, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return super().write(*args, **kwargs)

    context.sslsocket_class = Socket
    context.sslobject_class = Object
    return threads
