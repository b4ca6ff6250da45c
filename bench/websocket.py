#!/usr/bin/env python3
"""
bench/websocket.py - WebSocket through twistgate vs direct, and 1,000 idle
WebSockets held.

Starts a `websockets` echo server (asyncio, no compression) in a subprocess
and the gateway under ``twistd`` (one listener, one route to the echo
server), then, with an asyncio `websockets` client in this process:

* **echo round trip**: one connection, one 100-byte text message at a time
  (sent, echoed, received): messages/s and p50/p99 latency; then
  ``--connections`` connections echoing at once: messages/s.  Direct and
  through the gateway, with the ratios.
* **idle**: ``--idle`` WebSockets opened through the gateway and held; the
  gateway's resident memory (VmRSS of the twistd process) before and with
  them open, per connection; then every one of them echoes one message, to
  show they are alive.

Everything listens on 127.0.0.1 (ports base+1, base+2; base defaults to
27700) and is stopped on exit.  Not a test; reproducible from the
repository alone:

    bash tests/run.sh -q -x          # once: the venv, with websockets from the test extra
    .venv/bin/python bench/websocket.py [--duration S] [--connections N] [--idle N] [--base-port P]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = "x" * 100

SERVER = textwrap.dedent(
    """
    import asyncio, resource, sys
    from websockets.asyncio.server import serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def main():
        async with serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None, ping_interval=None, max_queue=None):
            print("ready", flush=True)
            await asyncio.Future()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
    """
)

GATEWAY = """
listeners:
  - {{name: public, endpoint: "tcp:{gw}:interface=127.0.0.1:backlog=2048"}}
websocket: {{idle_timeout: 1h}}
upstreams:
  echo:
    targets: [{{url: "http://127.0.0.1:{up}"}}]
routes:
  - {{name: echo, path: /echo, upstream: echo}}
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


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


async def sequential(port: int, duration: float) -> tuple:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/echo", compression=None, ping_interval=None) as ws:
        for _ in range(500):  # warm-up
            await ws.send(MESSAGE)
            await ws.recv()
        latencies = []
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            started = time.perf_counter()
            await ws.send(MESSAGE)
            await ws.recv()
            latencies.append(time.perf_counter() - started)
    latencies.sort()
    count = len(latencies)
    return count / duration, statistics.median(latencies) * 1000, latencies[int(count * 0.99) - 1] * 1000


async def concurrent(port: int, duration: float, connections: int) -> float:
    from websockets.asyncio.client import connect

    done = 0
    end = time.perf_counter() + duration

    async def one() -> None:
        nonlocal done
        async with connect(f"ws://127.0.0.1:{port}/echo", compression=None, ping_interval=None) as ws:
            while time.perf_counter() < end:
                await ws.send(MESSAGE)
                await ws.recv()
                done += 1

    await asyncio.gather(*(one() for _ in range(connections)))
    return done / duration


async def idle(port: int, count: int, gateway_pid: int) -> tuple:
    from websockets.asyncio.client import connect

    before = rss_kib(gateway_pid)
    opened = []
    for start in range(0, count, 100):  # in batches: the listen backlog stays small
        opened += await asyncio.gather(
            *(connect(f"ws://127.0.0.1:{port}/echo", compression=None, ping_interval=None, open_timeout=30)
              for _ in range(min(100, count - start)))
        )  # fmt: skip
    await asyncio.sleep(2)
    held = rss_kib(gateway_pid)

    async def alive(ws: object) -> bool:
        await ws.send("still here")  # type: ignore[attr-defined]
        return await ws.recv() == "still here"  # type: ignore[attr-defined]

    answered = sum(await asyncio.gather(*(alive(ws) for ws in opened)))
    await asyncio.gather(*(ws.close() for ws in opened))
    return before, held, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--base-port", type=int, default=27700)
    args = parser.parse_args()
    import websockets

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the subprocesses
    if hard < 2 * args.idle + 100:
        raise SystemExit(f"the open-files limit ({hard}) is too low for {args.idle} WebSockets")
    up, gw = args.base_port + 1, args.base_port + 2
    python = sys.executable
    twistd = str(Path(python).with_name("twistd"))
    processes = []
    with tempfile.TemporaryDirectory(prefix="twistgate-ws-bench.") as tmp:
        config = Path(tmp) / "gw.yaml"
        config.write_text(GATEWAY.format(gw=gw, up=up))
        try:
            processes.append(subprocess.Popen([python, "-c", SERVER, str(up)], stdout=subprocess.DEVNULL))
            wait_port(up)
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            gateway = subprocess.Popen(
                [twistd, "-n", "--pidfile=", "--logfile", str(Path(tmp) / "gw.log"), "twistgate", "--config", str(config)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            processes.append(gateway)
            wait_port(gw)
            rows = {}
            for name, port in (("direct", up), ("twistgate", gw)):
                rps, p50, p99 = asyncio.run(sequential(port, args.duration))
                crps = asyncio.run(concurrent(port, args.duration, args.connections))
                rows[name] = (rps, p50, p99, crps)
            before, held, answered = asyncio.run(idle(gw, args.idle, gateway.pid))
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
    direct = rows["direct"]
    print(f"WebSocket echo, 100-byte text messages, {args.duration:g} s per cell, python {sys.version.split()[0]}, "
          f"websockets {websockets.__version__}\n")  # fmt: skip
    print(f"| path | round trips/s, 1 connection | p50 ms | p99 ms | round trips/s, {args.connections} connections |")
    print("|---|---|---|---|---|")
    for name, (rps, p50, p99, crps) in rows.items():
        print(f"| {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {crps:,.0f} |")
    gateway_row = rows["twistgate"]
    print(
        f"| ratio (twistgate / direct) | {gateway_row[0] / direct[0]:.2f} | {gateway_row[1] / direct[1]:.2f} | "
        f"{gateway_row[2] / direct[2]:.2f} | {gateway_row[3] / direct[3]:.2f} |"
    )
    print(f"\n{args.idle} idle WebSockets through the gateway: gateway RSS {before / 1024:.1f} MiB before, "
          f"{held / 1024:.1f} MiB with them open (+{(held - before) / args.idle:.1f} KiB each); "
          f"{answered} of {args.idle} echoed a message afterwards")  # fmt: skip


if __name__ == "__main__":
    main()
