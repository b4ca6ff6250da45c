#!/usr/bin/env python3
"""
bench/read_cost.py - bench/inproc.py's harness with every byte read from a
real socket, the way Twisted's TCP transport reads it: what a read of
``--read`` bytes costs the interpreter beyond the system call.

    .venv-pypy/bin/python bench/read_cost.py                 # recv(65536), Twisted's read size
    .venv-pypy/bin/python bench/read_cost.py --read 16384    # smaller reads
    .venv-pypy/bin/python bench/read_cost.py --into          # recv_into a buffer kept for the run
    .venv-pypy/bin/python bench/read_cost.py --into client   # only the client side
    .venv-pypy/bin/python bench/read_cost.py --into client --upstream-read 16384   # what the gateway does on PyPy

Each request's bytes, and each piece of the upstream's answer, go through
a socket pair (``send`` then ``recv``) before ``dataReceived``: the system
calls are the same whatever ``--read`` is, so a difference between runs
is the interpreter's.  PyPy's ``recv(n)`` makes an n-byte string and
shrinks it to what arrived; in a bare loop over a socket pair each
``recv(65536)`` takes 64 KiB of nursery (a minor collection every 256
reads), and in twistd under wrk a proxied request takes 170-200 KiB of
nursery, 128 of them its two reads (PYPYLOG gc-minor).
Run it on PyPy: it sets the collector settings bench/compare.py gives
PyPy (`PYPY_ENVIRONMENT`) where the caller did not.  Read the mean of the
second half (after the JIT's warm-up, every collection counted), not the
fastest batch, and alternate the variants on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import PYPY_ENVIRONMENT  # noqa: E402


def reader(sock: socket.socket, size: int, into: bool) -> Callable[[], bytes]:
    """What Twisted's doRead does (``recv(size)``), or a ``recv_into`` a buffer made once."""
    if not into:
        recv = sock.recv
        return lambda: recv(size)
    buffer = bytearray(size)
    view = memoryview(buffer)
    recv_into = sock.recv_into
    return lambda: view[:recv_into(buffer)].tobytes()


class ThroughSocket:
    """A protocol whose every ``dataReceived`` goes over a socket pair first."""

    def __init__(self, protocol: Any, send: Callable[[bytes], int], read: Callable[[], bytes]) -> None:
        self.protocol, self._send, self._read = protocol, send, read

    def dataReceived(self, data: bytes) -> None:
        self._send(data)
        self.protocol.dataReceived(self._read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--read", type=int, default=65536, help="bytes asked for per read (Twisted's: 65536)")
    parser.add_argument("--into", nargs="?", const="both", choices=("both", "client"),
                        help="recv_into a buffer kept for the run instead of recv (both sides, or the client side only)")
    parser.add_argument("--upstream-read", type=int,
                        help="bytes asked for per read of the upstream's answers with recv (default: --read)")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    missing = {name: value for name, value in PYPY_ENVIRONMENT.items() if name not in os.environ}
    if missing and sys.implementation.name == "pypy":  # PyPy reads them at startup only: run again with them
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **missing})

    import inproc  # after the settings: it builds the gateway

    sender, receiver = socket.socketpair()
    read = reader(receiver, args.read, args.into is not None)
    upstream_size = args.upstream_read or args.read
    upstream_into = args.into == "both" and args.upstream_read is None
    upstream_read = read if upstream_into else reader(receiver, upstream_size, False)

    class Bench(inproc.Bench):
        def _connect_new(self) -> None:
            known = len(self.upstreams)
            super()._connect_new()
            self.upstreams[known:] = [(ThroughSocket(p, sender.send, upstream_read), w)
                                        for p, w in self.upstreams[known:]]

    bench = Bench(inproc.argparse.Namespace(config=str(HERE / "gw-bench.yaml"), full=False, engine=False, size=100,
                                            connections=50))
    bench.clients = [(ThroughSocket(p, sender.send, read), w) for p, w in bench.clients]
    times = []
    for _ in range(args.batches):
        start = time.process_time()
        bench.batch(args.batch)
        times.append((time.process_time() - start) / args.batch * 1e6)
    tail = sorted(times[len(times) // 2:])
    how = f"recv({args.read})" if args.into is None else f"recv_into a {args.read}-byte buffer ({args.into})"
    if not upstream_into and upstream_size != args.read:
        how += f", upstream recv({upstream_size})"
    print(f"{how}: second half {sum(tail) / len(tail):.1f} us/request mean, {tail[len(tail) // 2]:.1f} median "
          f"({args.batches} batches of {args.batch}, minimal route, 100-byte answers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
