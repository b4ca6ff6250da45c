#!/usr/bin/env python3
"""
bench/inproc.py - the gateway's own Python cost per request, without sockets.

    .venv/bin/python bench/inproc.py                     # minimal route (bench/gw-bench.yaml), 100-byte answers
    .venv/bin/python bench/inproc.py --full              # the full pipeline (bench/gw-full.yaml, a JWT)
    .venv/bin/python bench/inproc.py --size 65536        # 64 KiB answers (in 16 KiB reads)
    .venv/bin/python bench/inproc.py --engine            # the bare engine (bench/engine_proxy.py's handler)
    .venv/bin/python bench/inproc.py --profile 25        # and the 25 costliest functions (cProfile)
    .venv-pypy/bin/python bench/inproc.py --vmprof F     # PyPy: vmprof samples of the timed batches
                                                         # (read with .venv-pypy/bin/python -m vmprof.show F flat)

The same objects as under twistd (the configuration loaded from the file,
a `Generation`, the listener's `HTTP1ServerFactory`, the upstream group's
pool and `HTTP1ClientProtocol`s), with the sockets replaced by in-memory
transports and the reactor by `HarnessReactor`: each request's bytes go
into the client connection's ``dataReceived``, the upstream's answer into
the pooled connection's: a request on each of 50 keep-alive client
connections, all in flight together, then the 50 answers; timers are kept
as the reactor keeps them (`HarnessReactor`).  No
kernel, no epoll, no wrk: what is left is the Python the gateway runs per
request, timed in batches (CPU time, the fastest batch of many), so a
change of a few microseconds shows through the noise of a shared machine.
The fastest batch may have escaped a full garbage collection: the mean
shows what those cost.
On PyPy it sets the JIT's trace limit as ``twistd twistgate`` does
(`twistgate.gc_tuning.settle`), and wants the collector settings
bench/compare.py gives (its ``PYPY_ENVIRONMENT``) in the environment.
There it also prints what a request allocates (minor collections times the
nursery): steadier than the time, and a third of PyPy's cost is its collector.
It is a development tool: the published figures come from bench/compare.py.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import subprocess
import sys
import time
from heapq import heapify, heappush
from pathlib import Path
from typing import Any, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.base import DelayedCall  # noqa: E402
from twisted.internet.testing import MemoryReactor, StringTransport  # noqa: E402

from twistgate.gc_tuning import ON_PYPY, settle  # noqa: E402

SMALL = ("hello from the bench upstream " + "." * 100)[:99].encode() + b"\n"


class HarnessReactor(MemoryReactor):
    """
    `MemoryReactor` (connections are recorded, not made) with the real
    reactor's timer bookkeeping: a DelayedCall per ``callLater``, moved
    into a heap once per "iteration" (`pump`), cancelled ones left there
    until a compaction.  Time stands still: nothing here is ever due.
    """

    def __init__(self) -> None:
        super().__init__()
        self._now = 1_700_000_000.0
        self._new: List[DelayedCall] = []
        self._heap: List[DelayedCall] = []
        self._cancellations = 0

    def seconds(self) -> float:
        return self._now

    def callLater(self, delay: float, call: Any, *args: Any, **kw: Any) -> DelayedCall:
        delayed = DelayedCall(self._now + delay, call, args, kw, self._cancel, lambda c: None, seconds=self.seconds)
        self._new.append(delayed)
        return delayed

    def _cancel(self, delayed: DelayedCall) -> None:
        self._cancellations += 1

    def pump(self) -> None:
        for call in self._new:
            if call.cancelled:
                self._cancellations -= 1
            else:
                heappush(self._heap, call)
        self._new = []
        if self._cancellations > 50 and self._cancellations > len(self._heap) >> 1:
            self._cancellations = 0
            self._heap = [c for c in self._heap if not c.cancelled]
            heapify(self._heap)

    def getDelayedCalls(self) -> List[DelayedCall]:
        return [c for c in self._heap + self._new if not c.cancelled]


class Wire(StringTransport):
    """A transport that keeps what is written, and never pauses anyone."""

    def __init__(self, peer_port: int) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", peer_port))

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer, self.streaming = producer, streaming

    def unregisterProducer(self) -> None:
        self.producer = None


def upstream_answer(size: int) -> List[bytes]:
    """The upstream's response as the reads that would carry it (16 KiB each, like a socket buffer)."""
    body = SMALL if size == 100 else (b"0123456789abcdef" * (size // 16 + 1))[:size]
    data = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 20:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(body)) + body
    return [data[i:i + 16384] for i in range(0, len(data), 16384)]


def build(args: argparse.Namespace) -> Any:
    """``(handle factory, clock, headers)``: what serves requests, and the extra request headers."""
    clock = HarnessReactor()
    headers = b""
    if args.engine:
        sys.path.insert(0, str(HERE))
        from engine_proxy import EngineProxy  # noqa: E402
        from twistgate.engine import HTTP1ServerFactory, ServerLimits

        proxy = EngineProxy("http://127.0.0.1:27001")
        proxy.pool.clock = clock
        proxy.endpoint._reactor = clock  # noqa: SLF001 - a test double, not the gateway
        return HTTP1ServerFactory(proxy, limits=ServerLimits(max_request_body=1 << 40), clock=clock), clock, headers
    from twistgate.generation import Generation
    from twistgate.listeners import site_for
    from twistgate.resource import GatewayResource
    from twistgate.validation import load_prepared

    os.environ.setdefault("BENCH_PORT", "27200")
    os.environ.setdefault("BENCH_UPSTREAM_PORT", "27001")
    config_path = args.config
    if args.full:
        secret = "inproc-" + "0" * 40
        os.environ["BENCH_JWT_SECRET"] = secret
        os.environ.setdefault("BENCH_ACCESS_LOG", "/dev/null")
        token = subprocess.run([sys.executable, str(HERE / "make_token.py"), secret], capture_output=True, text=True,
                               check=True).stdout.strip()
        headers = b"Authorization: Bearer " + token.encode() + b"\r\n"
        config_path = str(HERE / "gw-full.yaml")
    config, files = load_prepared(config_path)
    generation = Generation(config, clock, files=files)
    resource = GatewayResource(generation)
    generation.start()
    factory = site_for(resource, config.limits, clock, listener=config.listeners[0].name)
    return factory, clock, headers


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.factory, self.clock, extra = build(args)
        self.request = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:27200\r\nUser-Agent: wrk\r\n%s\r\n" % (
            b"/" if args.size == 100 else b"/64k", extra)
        self.answer = upstream_answer(args.size)
        self.clients = []
        for index in range(args.connections):
            protocol = self.factory.buildProtocol(None)
            wire = Wire(40000 + index)
            protocol.makeConnection(wire)
            self.clients.append((protocol, wire))
        self.upstreams: List[Any] = []  # (protocol, wire) of each pooled connection made so far

    def _connect_new(self) -> None:
        """Connections the pool asked the (memory) reactor for: made now, as the kernel would."""
        pending = self.clock.tcpClients[len(self.upstreams):]
        for host, port, factory, _timeout, _bind in pending:
            protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
            wire = Wire(port)
            protocol.makeConnection(wire)
            self.upstreams.append((protocol, wire))

    def round(self) -> None:
        """One request on every client connection, all in flight at once (as under wrk -c50), then every answer."""
        request = self.request
        for protocol, _ in self.clients:
            protocol.dataReceived(request)
        self._connect_new()
        self.clock.pump()
        answered = 0
        for upstream, up_wire in self.upstreams:
            if up_wire.value():
                up_wire.clear()
                for piece in self.answer:
                    upstream.dataReceived(piece)
                answered += 1
        self.clock.pump()
        if answered != len(self.clients):
            raise SystemExit(f"{answered} requests went upstream, not {len(self.clients)}")
        for _, wire in self.clients:
            out = wire.value()
            if not out.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"unexpected answer: {out[:300]!r}")
            wire.clear()

    def batch(self, count: int) -> None:
        for _ in range(max(1, count // len(self.clients))):
            self.round()


def _count_minor_collections() -> List[int]:
    """PyPy: a counter of minor collections from now on (times the nursery, what requests allocate: steadier than time)."""
    count = [0]

    def minor(stats: Any) -> None:
        count[0] += stats.count

    gc.hooks.on_gc_minor = minor
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(HERE / "gw-bench.yaml"))
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--engine", action="store_true", help="the bare engine instead of the gateway")
    parser.add_argument("--size", type=int, default=100, choices=(100, 65536))
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest functions")
    parser.add_argument("--vmprof", metavar="FILE", help="PyPy: profile the timed batches with vmprof into FILE")
    args = parser.parse_args()
    if ON_PYPY:
        settle()  # as twistd twistgate does: on PyPy, the JIT's longer traces
    bench = Bench(args)
    bench.batch(args.batch)  # warm up: connections, caches
    gc.collect()
    profile_file = open(args.vmprof, "w+b") if args.vmprof else None
    if profile_file:
        import vmprof  # pip install vmprof (its reader; the sampler is PyPy's own)

        vmprof.enable(profile_file.fileno(), period=0.0005)
    minors = _count_minor_collections() if ON_PYPY else None
    best, times = float("inf"), []
    for _ in range(args.batches):
        start = time.process_time()
        bench.batch(args.batch)
        elapsed = (time.process_time() - start) / args.batch * 1e6
        times.append(elapsed)
        best = min(best, elapsed)
    if profile_file:
        vmprof.disable()
        profile_file.close()
    if minors is not None:
        gc.hooks.on_gc_minor = None
        nursery = gc.get_stats()._s.nursery_size  # noqa: SLF001 - PyPy's own stats, in bytes
        print(f"PyPy: {minors[0] * nursery / (args.batches * args.batch) / 1024:.1f} KB allocated a request "
              f"({minors[0]} minor collections of a {nursery >> 20} MB nursery)")
    times.sort()
    what = "engine" if args.engine else ("full pipeline" if args.full else "minimal route")
    print(f"{what}, {args.size}-byte answers: {best:.1f} us/request (fastest of {args.batches} batches of "
          f"{args.batch}; median {times[len(times) // 2]:.1f}, mean {sum(times) / len(times):.1f})")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        bench.batch(args.batch * 5)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
