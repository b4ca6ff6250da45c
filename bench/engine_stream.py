"""
Streaming memory check: 1 GiB down and 1 GiB up through a proxy, printing
the proxy's peak RSS (VmHWM, Linux).

    .venv/bin/python bench/engine_stream.py [--size-mib 1024] [--base-port 27900]
    .venv/bin/python bench/engine_stream.py --gateway    # twistgate under twistd (bench/gw-stream.yaml)

The proxy is bench/engine_proxy.py (the bare engine), or with ``--gateway``
the whole gateway under the twistd beside this Python (``--twistd`` for
another, e.g. a PyPy venv's).  Starts its own upstream (a Twisted protocol
that streams or swallows bodies with back-pressure) and the proxy as child
processes on 127.0.0.1; stops both at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from typing import Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCK = 1 << 20


def upstream(port: int) -> None:
    """GET: ``size`` bytes with Content-Length; POST: read the body, answer with its size."""
    from twisted.internet import protocol, reactor

    class Upstream(protocol.Protocol):
        def connectionMade(self) -> None:
            self.head, self.need, self.seen, self.left = b"", None, 0, 0

        def dataReceived(self, data: bytes) -> None:
            if self.need is None:
                self.head += data
                if b"\r\n\r\n" not in self.head:
                    return
                head, _, data = self.head.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                if lines[0].startswith(b"GET"):
                    size = int(lines[0].split(b" ")[1].strip(b"/") or b"0")
                    self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                    self.left = size
                    self.transport.registerProducer(self, True)
                    self.resumeProducing()
                    self.need = -1
                    return
                self.need = next(int(l.split(b":")[1]) for l in lines if l.lower().startswith(b"content-length"))
            self.seen += len(data)
            if self.need >= 0 and self.seen >= self.need:
                body = b"%d" % self.seen
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                self.connectionMade()  # ready for the next request on this connection

        def pauseProducing(self) -> None:
            self.paused = True

        def resumeProducing(self) -> None:
            self.paused = False
            block = b"z" * BLOCK
            while not self.paused and self.left > 0:
                chunk = block[: self.left]
                self.left -= len(chunk)
                self.transport.write(chunk)
            if self.left <= 0:
                self.transport.unregisterProducer()
                self.connectionMade()

        def stopProducing(self) -> None:
            self.left = 0

    reactor.listenTCP(port, protocol.Factory.forProtocol(Upstream), interface="127.0.0.1")
    reactor.run()


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def _exchange(port: int, head: bytes, upload: int) -> Tuple[int, bytes]:
    """Send ``head`` (and ``upload`` bytes), read the answer; returns body bytes received, and the first few."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head)
        block = b"u" * BLOCK
        for _ in range(upload // BLOCK):
            sock.sendall(block)
        received, seen_head, first = 0, b"", b""
        while True:
            data = sock.recv(BLOCK)
            if not data:
                return received, first
            if seen_head is not None:
                seen_head += data
                if b"\r\n\r\n" not in seen_head:
                    continue
                data = seen_head.partition(b"\r\n\r\n")[2]
                seen_head = None
            if len(first) < 64:
                first += data[: 64 - len(first)]
            received += len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--base-port", type=int, default=27900)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--gateway", action="store_true", help="twistgate under twistd instead of the bare engine")
    parser.add_argument("--config", default=os.path.join(HERE, "gw-stream.yaml"), help="the gateway's configuration")
    parser.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    options = parser.parse_args()
    if options.upstream_port:
        upstream(options.upstream_port)
        return
    up_port, proxy_port = options.base_port + 1, options.base_port + 2
    size = options.size_mib * BLOCK
    if options.gateway:
        env = dict(os.environ, BENCH_PORT=str(proxy_port), BENCH_UPSTREAM_PORT=str(up_port))
        proxy_cmd = [options.twistd, "-n", "--pidfile=", "twistgate", "--config", options.config]
    else:
        env = None
        proxy_cmd = [sys.executable, os.path.join(HERE, "engine_proxy.py"), "--port", str(proxy_port),
                     "--upstream", f"http://127.0.0.1:{up_port}"]
    children = [
        subprocess.Popen([sys.executable, __file__, "--upstream-port", str(up_port)]),
        subprocess.Popen(proxy_cmd, env=env, stdout=subprocess.DEVNULL),
    ]
    try:
        _wait_for(up_port)
        _wait_for(proxy_port)
        proxy = children[1].pid
        print(f"proxy RSS at start: {_peak_rss_mib(proxy):.1f} MiB")
        started = time.monotonic()
        got, _ = _exchange(proxy_port, b"GET /%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % size, 0)
        print(f"download {got / BLOCK:.0f} MiB in {time.monotonic() - started:.1f} s, proxy peak RSS {_peak_rss_mib(proxy):.1f} MiB")
        started = time.monotonic()
        head = b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % size
        _, counted = _exchange(proxy_port, head, size)
        print(f"upload {size / BLOCK:.0f} MiB in {time.monotonic() - started:.1f} s, proxy peak RSS {_peak_rss_mib(proxy):.1f} MiB")
        if got != size:
            raise SystemExit("download incomplete")
        if counted != b"%d" % size:
            raise SystemExit(f"upload incomplete: the upstream counted {counted!r}")
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()


if __name__ == "__main__":
    main()
