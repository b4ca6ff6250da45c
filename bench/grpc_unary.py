#!/usr/bin/env python3
"""
bench/grpc_unary.py - a gRPC unary round trip through twistgate vs direct.

Starts a grpcio server (a generic echo handler, 100-byte messages) in a
subprocess and the gateway under ``twistd`` (an ``h2c: true`` listener, an
``protocol: h2c`` upstream), then measures with the grpcio client in this
process, for each of direct and through the gateway:

* sequential calls (one in flight): calls/s and p50/p99 latency;
* concurrent calls (``--inflight`` futures on one channel): calls/s.

Prints a markdown table with the ratios (gateway / direct).  Everything
listens on 127.0.0.1 (ports base+1, base+2; base defaults to 27600) and is
stopped on exit.  Not a test; reproducible from the repository alone:

    .venv/bin/python bench/grpc_unary.py [--duration S] [--inflight N] [--base-port P]

Needs the test extra (grpcio): ``bash tests/run.sh -q -x`` installs it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHOD = "/bench.Echo/Call"
PAYLOAD = b"x" * 100

SERVER = textwrap.dedent(
    """
    import sys
    from concurrent import futures
    import grpc
    same = lambda b: b
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req, same, same)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()
    """
)

GATEWAY = """
listeners:
  - {{name: public, endpoint: "tcp:{gw}:interface=127.0.0.1", h2c: true}}
upstreams:
  echo:
    protocol: h2c
    targets: [{{url: "http://127.0.0.1:{up}"}}]
routes:
  - {{name: echo, path: "/bench.Echo/*", upstream: echo}}
"""


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def sequential(grpc: object, port: int, duration: float) -> tuple:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")  # type: ignore[attr-defined]
    call = channel.unary_unary(METHOD)
    for _ in range(200):  # warm-up: connections, caches
        call(PAYLOAD, timeout=5)
    latencies = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        started = time.perf_counter()
        call(PAYLOAD, timeout=5)
        latencies.append(time.perf_counter() - started)
    channel.close()
    latencies.sort()
    count = len(latencies)
    return count / duration, statistics.median(latencies) * 1000, latencies[int(count * 0.99) - 1] * 1000


def concurrent(grpc: object, port: int, duration: float, inflight: int) -> float:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")  # type: ignore[attr-defined]
    call = channel.unary_unary(METHOD)
    for _ in range(100):
        call(PAYLOAD, timeout=5)
    done = 0
    end = time.perf_counter() + duration
    pending = [call.future(PAYLOAD, timeout=10) for _ in range(inflight)]
    while pending:
        future = pending.pop(0)
        future.result()
        done += 1
        if time.perf_counter() < end:
            pending.append(call.future(PAYLOAD, timeout=10))
    channel.close()
    return done / duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--base-port", type=int, default=27600)
    args = parser.parse_args()
    import grpc

    up, gw = args.base_port + 1, args.base_port + 2
    python = sys.executable
    twistd = str(Path(python).with_name("twistd"))
    processes = []
    with tempfile.TemporaryDirectory(prefix="twistgate-grpc-bench.") as tmp:
        config = Path(tmp) / "gw.yaml"
        config.write_text(GATEWAY.format(gw=gw, up=up))
        try:
            processes.append(subprocess.Popen([python, "-c", SERVER, str(up)], stdout=subprocess.DEVNULL))
            wait_port(up)
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            processes.append(
                subprocess.Popen(
                    [twistd, "-n", "--pidfile=", "--logfile", str(Path(tmp) / "gw.log"), "twistgate", "--config", str(config)],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
            wait_port(gw)
            rows = {}
            for name, port in (("direct", up), ("twistgate", gw)):
                rps, p50, p99 = sequential(grpc, port, args.duration)
                crps = concurrent(grpc, port, args.duration, args.inflight)
                rows[name] = (rps, p50, p99, crps)
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
    direct = rows["direct"]
    print(f"gRPC unary, 100-byte messages, {args.duration:g} s per cell, python {sys.version.split()[0]}, grpcio {grpc.__version__}\n")
    print(f"| path | sequential calls/s | p50 ms | p99 ms | calls/s, {args.inflight} in flight |")
    print("|---|---|---|---|---|")
    for name, (rps, p50, p99, crps) in rows.items():
        print(f"| {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {crps:,.0f} |")
    gateway = rows["twistgate"]
    print(
        f"| ratio (twistgate / direct) | {gateway[0] / direct[0]:.2f} | {gateway[1] / direct[1]:.2f} | "
        f"{gateway[2] / direct[2]:.2f} | {gateway[3] / direct[3]:.2f} |"
    )


if __name__ == "__main__":
    main()
