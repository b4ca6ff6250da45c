#!/usr/bin/env python3
"""
bench/real_instructions.py - CPU instructions per request of the running
proxy process (sockets, the real reactor), counted by valgrind's callgrind.

    bench/real_instructions.py gw|full|engine [--requests 5000]

Starts bench/upstream.py on CPU 1 and the proxy under ``valgrind
--tool=callgrind`` on CPU 0 (``gw``: twistd on bench/gw-bench.yaml;
``full``: bench/gw-full.yaml with a JWT; ``engine``:
bench/engine_proxy.py), sends 3,000 keep-alive requests to warm it up,
zeroes the counters (``callgrind_control -z``), sends ``--requests`` more
over 50 connections, dumps, and divides.  Compare with the same count in
process (valgrind on bench/inproc.py's harness): what the real process
runs on top is the reactor's and the kernel interface's work.
docs/benchmarks.md ("Why the gateway's layer costs twice as much with
sockets") uses it.  Standard library only, plus valgrind.
"""

from __future__ import annotations

import argparse
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import Processes, wait_ready  # noqa: E402
from socket_cost import proxy_command  # noqa: E402


def keep_alive_requests(port: int, count: int, connections: int, extra: bytes = b"") -> None:
    """`count` GET / over `connections` keep-alive connections, one request in flight on each."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (port, extra)
    selector = selectors.DefaultSelector()
    sent = done = 0
    for _ in range(min(connections, count)):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state = {"sock": sock, "buffer": b""}
        selector.register(sock, selectors.EVENT_READ, state)
        sock.sendall(request)
        sent += 1
    while done < count:
        for key, _ in selector.select(timeout=120):
            state = key.data
            data = state["sock"].recv(65536)
            if not data:
                raise SystemExit("the proxy closed a connection")
            state["buffer"] += data
            while True:
                buffer = state["buffer"]
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buffer[:end].lower()
                if not head.startswith(b"http/1.1 200"):
                    raise SystemExit(f"unexpected answer: {head[:80]!r}")
                length = int(re.search(rb"content-length: *(\d+)", head).group(1))
                if len(buffer) < end + 4 + length:
                    break
                state["buffer"] = buffer[end + 4 + length :]
                done += 1
                if sent < count:
                    state["sock"].sendall(request)
                    sent += 1
    for key in list(selector.get_map().values()):
        key.fileobj.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("proxy", choices=("gw", "full", "engine"))
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--python", default=str(HERE.parent / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="twistgate-instructions."))
    procs = Processes(workdir)
    up_port, port = 27911, 27912
    try:
        upstream = procs.start("upstream", [args.python, str(HERE / "upstream.py"), str(up_port)], "1")
        if not wait_ready(up_port, upstream, "upstream"):
            return 2
        argv, env, headers = proxy_command(args.proxy, args.python, up_port, port, workdir)
        env["PYTHONHASHSEED"] = "0"
        extra = b"".join(line.encode() + b"\r\n" for line in headers)
        out = workdir / "callgrind.out"
        proxy = procs.start(args.proxy, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv], "0", env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        keep_alive_requests(port, 3000, 50, extra)  # warm-up
        subprocess.run(["callgrind_control", "-z", str(proxy.pid)], check=True, capture_output=True)
        keep_alive_requests(port, args.requests, 50, extra)
        subprocess.run(["callgrind_control", "-d", "measured", str(proxy.pid)], check=True, capture_output=True)
        dumps = sorted(workdir.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        totals = re.search(r"^(?:summary|totals): (\d+)", dumps[-1].read_text(), re.M)
        if totals is None:
            print("no callgrind totals", file=sys.stderr)
            return 1
        print(f"{args.proxy}: {int(totals.group(1)) / args.requests / 1000:.0f}k instructions per request "
              f"(the process under callgrind, {args.requests} keep-alive requests over 50 connections)")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
