#!/usr/bin/env python3
"""
bench/profile_gateway.py - where the gateway's time goes, under load.

    bench/profile_gateway.py                          # cProfile, minimal route (bench/gw-bench.yaml), wrk -c50 GET / for 10 s
    bench/profile_gateway.py --full                   # the full pipeline (bench/gw-full.yaml, with a JWT)
    bench/profile_gateway.py --profiler py-spy        # sampling (py-spy; pip install py-spy into the venv)
    bench/profile_gateway.py --path /64k --top 40 --duration 20

Starts the same upstream as bench/compare.py (nginx with 1 worker, else
bench/upstream.py), then the gateway under the profiler pinned to CPU 0 and
wrk on CPU 1.  cProfile's figures are inflated by its own cost per call
(about 2x here), so read them as shares; py-spy samples the running process
without slowing it, and its table gives each function's own share of the
samples ("self") and the share of samples with the function on the stack
("total").  Everything started here is stopped on exit.  Standard library
only (plus py-spy for --profiler py-spy).
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import SMALL_BODY, Processes, log, nginx_conf, run_wrk, wait_ready  # noqa: E402


def start_upstream(procs: Processes, workdir: Path, port: int, python: str, cpu: str) -> bool:
    nginx = shutil.which("nginx")
    if nginx:
        (workdir / "64k.bin").write_bytes((b"0123456789abcdef" * 4096)[:65536])
        (workdir / "64k.bin").chmod(0o644)
        (workdir / "upstream.conf").write_text(nginx_conf(workdir, "upstream", (
            "sendfile on;\n"
            f"server {{ listen 127.0.0.1:{port} backlog=4096;\n"
            f"  location = /64k {{ default_type application/octet-stream; alias {workdir}/64k.bin; }}\n"
            f"  location / {{ default_type text/plain; return 200 \"{SMALL_BODY[:-1]}\\n\"; }}\n}}\n"
        )))
        up = procs.start("upstream", [nginx, "-p", f"{workdir}/", "-e", f"{workdir}/upstream.err", "-c",
                                      f"{workdir}/upstream.conf"], cpu)
    else:
        up = procs.start("upstream", [python, str(HERE / "upstream.py"), str(port)], cpu)
    return wait_ready(port, up, "upstream")


def pyspy_table(raw: Path, top: int) -> str:
    """Self and total shares per function from py-spy's collapsed stacks."""
    own: Dict[str, int] = collections.Counter()
    total: Dict[str, int] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    rows: List[Tuple[str, int]] = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    lines = [f"{samples} samples", "", "| self % | total % | function |", "|---:|---:|---|"]
    for name, n in rows:
        lines.append(f"| {100.0 * n / samples:.1f} | {100.0 * total[name] / samples:.1f} | `{name}` |")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (file.py)``, from the package root down."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for root in ("/twistgate/", "/twisted/", "/site-packages/", "/lib/python3"):
        if root in where:
            where = where.split(root, 1)[1]
            break
    return f"{name} ({where})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="bench/gw-full.yaml with a JWT (else --config)")
    parser.add_argument("--config", default="bench/gw-bench.yaml")
    parser.add_argument("--profiler", choices=("cprofile", "py-spy"), default="cprofile")
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumulative)")
    parser.add_argument("--base-port", type=int, default=27600)
    parser.add_argument("--python", default=str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"))
    parser.add_argument("--keep", help="also keep the raw profile here")
    args = parser.parse_args()
    pin = (os.cpu_count() or 1) >= 2
    proxy_cpu, load_cpu = ("0", "1") if pin else (None, None)
    workdir = Path(tempfile.mkdtemp(prefix="twistgate-profile."))
    workdir.chmod(0o755)
    procs = Processes(workdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        up_port, gw_port = args.base_port + 1, args.base_port + 2
        if not start_upstream(procs, workdir, up_port, args.python, load_cpu):
            return 2
        env = {"BENCH_PORT": str(gw_port), "BENCH_UPSTREAM_PORT": str(up_port)}
        config, headers = args.config, []
        if args.full:
            secret = os.urandom(32).hex()
            token = subprocess.run([args.python, str(HERE / "make_token.py"), secret], capture_output=True,
                                   text=True, check=True).stdout.strip()
            env.update(BENCH_JWT_SECRET=secret, BENCH_ACCESS_LOG=str(workdir / "access.log"))
            config, headers = "bench/gw-full.yaml", [f"Authorization: Bearer {token}"]
        twistd = str(Path(args.python).parent / "twistd")
        stats = workdir / "gateway.prof"
        argv = [twistd, "-n", "--pidfile="]
        if args.profiler == "cprofile":
            argv += [f"--profile={stats}", "--profiler=cprofile", "--savestats"]
        gateway = procs.start("twistgate", argv + ["twistgate", "--config", config], proxy_cpu, env=env)
        if not wait_ready(gw_port, gateway, "twistgate", headers):
            return 2
        run_wrk(gw_port, args.path, args.connections, 2, load_cpu, headers)  # warm-up
        spy = None
        raw = workdir / "pyspy.txt"
        if args.profiler == "py-spy":
            spy_bin = shutil.which("py-spy") or str(Path(args.python).parent / "py-spy")
            spy = subprocess.Popen([spy_bin, "record", "--format", "raw", "--rate", "1000", "--nonblocking",
                                    "-o", str(raw), "--pid", str(gateway.pid), "--duration", str(args.duration)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        result = run_wrk(gw_port, args.path, args.connections, args.duration, load_cpu, headers)
        log(f"{result['rps']:.0f} rps under the profiler, p50 {result['p50']:.2f} ms, errors {result['errors']}")
        if spy is not None:
            spy.wait(timeout=args.duration + 30)
            print(pyspy_table(raw, args.top))
            if args.keep:
                shutil.copy(raw, args.keep)
            return 0
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(timeout=30)
        stream = pstats.Stats(str(stats))
        stream.sort_stats(args.sort).print_stats(args.top)
        if args.keep:
            shutil.copy(stats, args.keep)
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
