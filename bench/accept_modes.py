"""
bench/accept_modes.py - how two worker processes should share a port
(not a test, not in CI; 127.0.0.1 only; every process it starts is stopped).

    .venv/bin/python bench/accept_modes.py [--duration S] [--port P]

Two small Twisted HTTP servers (100-byte answers) share one port, in the two
ways a supervisor can arrange it:

* ``shared``: one listening socket, bound by the parent, inherited and
  adopted by both children (``adoptStreamPort``): one accept queue;
* ``shared-one``: the same, each child accepting one connection per wakeup
  (like nginx's ``multi_accept off``);
* ``shared-fair``: one per wakeup, and a child holding clearly more
  connections than the other lets a wakeup pass (what twistgate's workers
  do, `twistgate.workers.fairness`);
* ``reuseport``: each child binds its own socket with SO_REUSEPORT: the
  kernel spreads new connections over two queues by a hash of the address.

For each, wrk measures: keep-alive throughput and how the connections spread;
one connection per request (``Connection: close``); the same while one child
is stopped (SIGSTOP) for a second; and the same while one child is killed
(SIGKILL) and not restarted.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

BODY = b"x" * 100
HERE = os.path.dirname(os.path.abspath(__file__))


def child(mode: str, where: str, index: int, directory: str) -> None:
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    served = [0]

    class Answer(Resource):
        isLeaf = True

        def render_GET(self, request):  # type: ignore[no-untyped-def]
            served[0] += 1
            return BODY

    class Counting(Site):
        open: set = set()

        def buildProtocol(self, addr):  # type: ignore[no-untyped-def]
            protocol = super().buildProtocol(addr)
            lost = protocol.connectionLost

            def gone(reason, protocol=protocol):  # type: ignore[no-untyped-def]
                self.open.discard(protocol)
                return lost(reason)

            protocol.connectionLost = gone
            self.open.add(protocol)
            return protocol

    site = Counting(Answer())
    site.log = lambda request: None  # type: ignore[method-assign]
    if mode.startswith("shared"):
        port = reactor.adoptStreamPort(int(where), socket.AF_INET, site)
        if mode in ("shared-one", "shared-fair"):
            from twistgate._twisted_compat import accept_one_at_a_time

            fair = None
            if mode == "shared-fair":
                from twisted.internet.task import LoopingCall

                from twistgate.workers.fairness import HEARTBEAT, Board, FairShare

                fair = FairShare(Board(os.path.join(directory, "board"), index - 1), reactor,
                                 lambda: len(site.open))
                LoopingCall(fair.heartbeat).start(HEARTBEAT)
            accept_one_at_a_time(port, fair.allow if fair else None, reactor)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", int(where)))
        sock.listen(1024)
        sock.setblocking(False)
        reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, site)
        sock.close()

    def report() -> None:
        with open(os.path.join(directory, f"child-{index}"), "w") as f:
            f.write(str(served[0]))

    reactor.addSystemEventTrigger("before", "shutdown", report)
    reactor.callWhenRunning(lambda: open(os.path.join(directory, f"ready-{index}"), "w").close())
    reactor.run()


class Pair:
    """Two children serving 127.0.0.1:port in `mode`."""

    def __init__(self, mode: str, port: int) -> None:
        self.mode, self.port = mode, port
        self.directory = tempfile.mkdtemp(prefix="accept-modes-")
        self.listener = None
        fds: Tuple[int, ...] = ()
        from twistgate.workers.fairness import create

        create(os.path.join(self.directory, "board"), 2)
        where = str(port)
        if mode.startswith("shared"):
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", port))
            self.listener.listen(1024)
            self.listener.setblocking(False)
            fds = (self.listener.fileno(),)
            where = str(self.listener.fileno())
        self.procs = [
            subprocess.Popen([sys.executable, __file__, "--child", mode, where, str(i), self.directory], pass_fds=fds)
            for i in (1, 2)
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # both children listening
            if all(os.path.exists(os.path.join(self.directory, f"ready-{i}")) for i in (1, 2)):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{mode}: the children did not start")

    def served(self) -> List[int]:
        counts = []
        for i in (1, 2):
            try:
                with open(os.path.join(self.directory, f"child-{i}")) as f:
                    counts.append(int(f.read()))
            except OSError:
                counts.append(-1)  # killed: it could not tell
        return counts

    def close(self) -> List[int]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.listener is not None:
            self.listener.close()
        return self.served()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(port: int, seconds: float, *, close: bool, connections: int = 50) -> Tuple[float, float, int, int]:
    """(requests/s, p99 ms, errors, requests)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--timeout", "2s", "--latency",
               "-s", os.path.join(HERE, "report.lua"), f"http://127.0.0.1:{port}/"]
    if close:
        command[1:1] = ["-H", "Connection: close"]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    lines = [l for l in ran.stdout.splitlines() if l.startswith("BENCH")]
    if not lines:
        raise RuntimeError(f"wrk gave no result:\n{ran.stdout}\n{ran.stderr}")
    line = lines[0]
    _, rps, _p50, p99, errors, non2xx, requests = line.split()
    return float(rps), float(p99), int(errors) + int(non2xx), int(requests)


def scenario(mode: str, port: int, seconds: float, name: str) -> str:
    pair = Pair(mode, port)
    event = ""
    try:
        if name in ("stalled", "killed"):
            import threading

            def disturb() -> None:
                time.sleep(seconds / 3)
                if name == "stalled":
                    os.kill(pair.procs[0].pid, signal.SIGSTOP)
                    time.sleep(1.0)
                    os.kill(pair.procs[0].pid, signal.SIGCONT)
                else:
                    os.kill(pair.procs[0].pid, signal.SIGKILL)

            t = threading.Thread(target=disturb)
            t.start()
            rps, p99, errors, requests = wrk(port, seconds, close=True)
            t.join()
            event = "one connection per request, child 1 stopped for 1 s" if name == "stalled" else "one connection per request, child 1 killed"
        else:
            rps, p99, errors, requests = wrk(port, seconds, close=(name == "short"))
    finally:
        served = pair.close()
    share = "-" if -1 in served else f"{served[0]} / {served[1]}"
    label = {"keepalive": "keep-alive, 50 connections", "short": "one connection per request"}.get(name, event)
    return f"| {mode} | {label} | {rps:.0f} | {p99:.1f} | {errors} | {requests} | {share} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--port", type=int, default=0, help="default: a free port for each run")
    args = parser.parse_args()
    print(f"# bench/accept_modes.py {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} cpus {os.cpu_count()} "
          f"load {open('/proc/loadavg').read().split()[0]}; wrk -t1 -c50 -d{args.duration:g}s --timeout 2s")
    print()
    print("| mode | load | requests/s | p99 ms | failed | requests | served by child 1 / 2 |")
    print("|---|---|---|---|---|---|---|")
    for name in ("keepalive", "short", "stalled", "killed"):
        for mode in ("shared", "shared-one", "shared-fair", "reuseport"):
            print(scenario(mode, args.port or free_port(), args.duration, name), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
