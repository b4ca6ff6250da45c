#!/usr/bin/env python3
"""
bench/socket_cost.py - one proxy's CPU per request with sockets, split
into user and system time, and how idle the load generator's CPU was.

    bench/socket_cost.py gw|full|engine [--seconds 5] [--warmup 3] [--pace-ms 5] [--perf]

Starts the same upstream as bench/profile_gateway.py on CPU 1 (nginx, else
bench/upstream.py), the proxy on CPU 0 (``gw``: twistd on
bench/gw-bench.yaml; ``full``: bench/gw-full.yaml with a JWT; ``engine``:
bench/engine_proxy.py), warms it up with wrk ``-c50`` for 3 s, then
measures one wrk run.  ``--pace-ms`` makes each of wrk's 50 connections
wait that long between requests (wrk's ``delay`` hook), so that proxies of
different speeds are compared at one request rate; ``--perf`` counts, with
``perf stat`` tracepoints, the system calls and the inter-processor
interrupts (IPIs) per request.  docs/benchmarks.md ("Why the gateway's
layer cost twice as much with sockets" and "The wake-ups") uses it.  A PyPy ``--python``
gets the collector settings bench/compare.py gives twistgate-pypy.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402
from compare import Processes, wait_ready  # noqa: E402
from profile_gateway import start_upstream  # noqa: E402

#: Appended to bench/report.lua for --pace-ms: each connection waits PACE_MS between requests.
PACED = '\ndelay = function() return tonumber(os.getenv("PACE_MS") or "0") end\n'

TRACEPOINTS = (
    "ipi:ipi_send_cpu,ipi:ipi_send_cpumask,syscalls:sys_enter_sendto,"
    "syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait"
)


def proc_cpu(pid: int) -> tuple:
    """(user ticks, system ticks) of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def cpu1_idle() -> tuple:
    """(idle ticks, all ticks) of CPU 1, where wrk and the upstream run."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu1 "):
            values = [int(v) for v in line.split()[1:]]
            return values[3] + values[4], sum(values)
    return 0, 1


def minor_collections(log: str) -> int:
    """Minor collections PyPy logged to `log` so far (PYPYLOG=gc-minor; its buffer lags by a few)."""
    return Path(log).read_text(errors="replace").count("{gc-minor\n") if log and Path(log).exists() else 0


def is_pypy(python: str) -> bool:
    """Whether `python` is PyPy (whose collector settings come from the environment)."""
    probe = [python, "-c", "import platform; print(platform.python_implementation())"]
    return subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "PyPy"


def proxy_command(proxy: str, python: str, up_port: int, port: int, workdir: Path) -> Tuple[List[str], Dict[str, str], List[str]]:
    """(argv, environment, request header lines) of ``gw``, ``full`` or ``engine`` listening on `port`."""
    env = {"BENCH_PORT": str(port), "BENCH_UPSTREAM_PORT": str(up_port)}
    if is_pypy(python):
        # as bench/compare.py runs twistgate-pypy; a setting in this environment wins (to try others)
        env.update({name: value for name, value in compare.PYPY_ENVIRONMENT.items() if name not in os.environ})
    if proxy == "engine":
        return [python, str(HERE / "engine_proxy.py"), "--port", str(port), "--upstream", f"http://127.0.0.1:{up_port}"], env, []
    config, headers = "bench/gw-bench.yaml", []
    if proxy == "full":
        secret = os.urandom(32).hex()
        token = subprocess.run([python, str(HERE / "make_token.py"), secret], capture_output=True, text=True, check=True).stdout.strip()
        env.update(BENCH_JWT_SECRET=secret, BENCH_ACCESS_LOG=str(workdir / "access.log"))
        config, headers = "bench/gw-full.yaml", [f"Authorization: Bearer {token}"]
    return [str(Path(python).parent / "twistd"), "-n", "--pidfile=", "twistgate", "--config", config], env, headers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("proxy", choices=("gw", "full", "engine"))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--pace-ms", type=float, default=0.0)
    parser.add_argument("--perf", action="store_true")
    parser.add_argument("--path", default="/", help="the path wrk asks for (/64k: 64 KiB answers)")
    parser.add_argument("--record", metavar="FILE", help="also `perf record` the proxy into FILE while measuring")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before measuring (PyPy's JIT wants ~10)")
    parser.add_argument("--gc-log", metavar="FILE",
                        help="PyPy: log minor collections to FILE (PYPYLOG) and print requests per minor collection")
    parser.add_argument("--python", default=str(HERE.parent / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="twistgate-socket-cost."))
    workdir.chmod(0o755)
    procs = Processes(workdir)
    up_port, port = 27821, 27822
    try:
        if not start_upstream(procs, workdir, up_port, args.python, "1"):
            return 2
        argv, env, headers = proxy_command(args.proxy, args.python, up_port, port, workdir)
        if args.gc_log:
            env["PYPYLOG"] = f"gc-minor:{args.gc_log}"
        proxy = procs.start(args.proxy, argv, "0", env=env)
        if not wait_ready(port, proxy, args.proxy, headers):
            return 2
        compare.run_wrk(port, args.path, 50, args.warmup, "1", headers)
        if args.pace_ms:
            os.environ["PACE_MS"] = str(args.pace_ms)
            compare.HERE = workdir  # run_wrk takes report.lua from there
            (workdir / "report.lua").write_text((HERE / "report.lua").read_text() + PACED)
        perf = None
        if args.perf:
            perf = subprocess.Popen(["perf", "stat", "-x,", "-o", str(workdir / "perf.txt"), "-p", str(proxy.pid), "-e", TRACEPOINTS])
            time.sleep(0.3)
        if args.record:
            recorder = subprocess.Popen(["perf", "record", "-q", "-o", args.record, "-p", str(proxy.pid)])
            time.sleep(0.3)
        user0, sys0 = proc_cpu(proxy.pid)
        idle0, all0 = cpu1_idle()
        minor0 = minor_collections(args.gc_log)
        result = compare.run_wrk(port, args.path, 50, args.seconds, "1", headers)
        user1, sys1 = proc_cpu(proxy.pid)
        idle1, all1 = cpu1_idle()
        minor1 = minor_collections(args.gc_log)
        n = result["requests"]
        if not n:
            print("no requests answered", file=sys.stderr)
            return 1
        tick = os.sysconf("SC_CLK_TCK")
        print(f"{args.proxy}: {result['rps']:.0f} req/s, user {(user1 - user0) / tick / n * 1e6:.1f} µs/req, "
              f"system {(sys1 - sys0) / tick / n * 1e6:.1f} µs/req, CPU 1 idle {(idle1 - idle0) / max(all1 - all0, 1) * 100:.0f} %")
        if args.gc_log:
            print(f"  {n / max(minor1 - minor0, 1):.0f} requests per minor collection ({minor1 - minor0} of them)")
        if args.record:
            recorder.send_signal(signal.SIGINT)
            recorder.wait()
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait()
            for line in (workdir / "perf.txt").read_text().splitlines():
                parts = line.split(",")
                if len(parts) > 3 and parts[0].strip().isdigit():
                    print(f"  {parts[2]}: {int(parts[0]) / n:.3f} per request")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
