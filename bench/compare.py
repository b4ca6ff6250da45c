#!/usr/bin/env python3
"""
bench/compare.py - twistgate side by side with nginx and reference Python
proxies, interleaved, with the CPU each proxy spends per request.

    bench/compare.py                                   # twistgate (bench/gw-bench.yaml) vs direct and nginx
    bench/compare.py --with twisted-rp,aiohttp-uvloop  # and the reference contenders
    bench/compare.py --config bench/gw-full.yaml       # another twistgate configuration
    bench/compare.py --reps 3 --duration 10 --warmup 3 # the slower, more precise run
    bench/compare.py --with engine,twistgate-full      # the bare engine, and the full pipeline beside the minimal route
    bench/compare.py --with aiohttp-uvloop,twistgate-pypy --warmup 10   # the same gateway on PyPy beside CPython

Every contender listens on 127.0.0.1 and forwards to one upstream (nginx,
1 worker, or bench/upstream.py without nginx) that serves ``GET /`` (100
bytes) and ``GET /64k`` (65 536 bytes).  Scenarios: small-c50 (wrk -c50
GET /), small-c200, big-c50 (GET /64k).  Each rep visits every contender
in a rotated order, so drift on this shared machine hits all alike; the
tables give medians over the reps, and ``x nginx`` / ``x direct`` are the
medians of per-rep paired ratios.  ``us/req`` is the proxy's CPU time
(user + system, all its processes, from /proc) per request: a number that
does not depend on how the CPUs were shared.  ``x aiohttp-uvloop`` is the
paired ratio to that contender when it ran; ``peak RSS MiB`` is each
proxy's peak resident memory over the whole run.  ``--scenarios
small-c1000`` adds 1,000 keep-alive connections (GET /).

Contenders for ``--with``: ``twisted-rp`` (Twisted's ReverseProxyResource),
``aiohttp-uvloop`` (bench/proxies/aiohttp_proxy.py), ``engine`` (the bare
HTTP/1.1 engine, bench/engine_proxy.py: the gateway's ceiling) and
``twistgate-full`` (twistgate on bench/gw-full.yaml: JWT, rate limit,
metrics, access log; it alone is sent an ``Authorization`` header with a
token signed by a secret made for the run) and ``twistgate-pypy``
(twistgate on PyPy, the twistd of ``.venv-pypy`` that ``bash
tests/pypy.sh`` makes, or ``--pypy``; give it a longer ``--warmup`` for its
JIT; it runs with the collector settings docs/deployment.md gives a PyPy
process, `PYPY_ENVIRONMENT`).

Layout on 2+ cores: the proxy under test alone on CPU 0, wrk and the
upstream on CPU 1 (``--no-pin`` to turn off).  Needs wrk and curl; nginx
and aiohttp/uvloop are optional (bench/setup.sh installs them).  Every
process started here is stopped on exit.  Standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

def _gc_tuning() -> Any:
    """
    twistgate/gc_tuning.py on its own (it imports nothing of twistgate's):
    importing the package would import Twisted, which the interpreter that
    runs this script need not have.
    """
    path = Path(__file__).resolve().parent.parent / "twistgate" / "gc_tuning.py"
    spec = importlib.util.spec_from_file_location("twistgate_gc_tuning", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PYPY_GC_SETTINGS = _gc_tuning().PYPY_GC_SETTINGS

#: How docs/deployment.md ("On PyPy") runs a single PyPy process: PyPy reads
#: its collector's settings from the environment at startup only.
PYPY_ENVIRONMENT = {"PYPY_GC_MAX_DELTA": "32MB", **PYPY_GC_SETTINGS}

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = {"small-c50": ("/", 50), "small-c200": ("/", 200), "big-c50": ("/64k", 50), "small-c1000": ("/", 1000)}
DEFAULT_SCENARIOS = "small-c50,small-c200,big-c50"  # small-c1000 (1,000 keep-alive connections) on request
SMALL_BODY = ("hello from the bench upstream " + "." * 100)[:99] + "\n"
TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


class Processes:
    """Everything started here, each in its own process group, stopped at exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: List[subprocess.Popen] = []

    def start(self, name: str, argv: List[str], cpu: Optional[str], env: Optional[dict] = None) -> subprocess.Popen:
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", cpu] + argv
        out = open(self.workdir / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env={**os.environ, **(env or {})})
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.started:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_ready(port: int, proc: subprocess.Popen, name: str, headers: List[str] = (), timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    fields = dict(header.split(": ", 1) for header in headers)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log(f"{name} exited early (see its log)")
            return False
        try:
            sizes = [len(urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=fields),
                                                timeout=2).read()) for path in ("/", "/64k")]
            if sizes == [100, 65536]:
                return True
            log(f"{name}: wrong body sizes {sizes}")
            return False
        except OSError:
            time.sleep(0.1)
    log(f"{name} did not answer on port {port}")
    return False


def nginx_conf(workdir: Path, name: str, http: str) -> str:
    """One nginx worker, no access log, keep-alive without limits, temp files in `workdir`."""
    temp = "".join(f"    {kind}_temp_path {workdir}/{name}-{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        f"worker_processes 1;\ndaemon off;\npid {workdir}/{name}.pid;\nerror_log {workdir}/{name}.err;\n"
        "events { worker_connections 8192; }\n"
        "http {\n    access_log off;\n    server_tokens off;\n    keepalive_requests 100000000;\n"
        f"    keepalive_timeout 300s;\n{temp}{http}}}\n"
    )


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU of `pid` and every descendant, from /proc."""
    parents: Dict[int, int] = {}
    ticks: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    family = {pid}
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                grew = True
    return sum(ticks.get(p, 0) for p in family) / TICKS


def tree_peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of `pid` and its direct children, added up, in MiB."""
    family = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            family += [int(child) for child in f.read().split()]
    except OSError:
        pass
    total = 0
    for member in family:
        try:
            with open(f"/proc/{member}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
        except OSError:
            pass
    return total / 1024


def run_wrk(port: int, path: str, connections: int, seconds: int, cpu: Optional[str], headers: List[str] = ()) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
            "-s", str(HERE / "report.lua"), f"http://127.0.0.1:{port}{path}"]
    for header in headers:
        argv[1:1] = ["-H", header]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", cpu] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        return {"rps": 0.0, "p50": 0.0, "p99": 0.0, "errors": -1, "requests": 0}
    rps, p50, p99, sockerr, badstatus, requests = line.split()[1:]
    return {"rps": float(rps), "p50": float(p50), "p99": float(p99),
            "errors": int(sockerr) + int(badstatus), "requests": int(requests)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="bench/gw-bench.yaml", help="twistgate's configuration (BENCH_PORT, BENCH_UPSTREAM_PORT)")
    parser.add_argument("--with", dest="extra", default="", help="more contenders: twisted-rp, aiohttp-uvloop, engine, twistgate-full, twistgate-pypy")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=27000)
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="the venv whose twistd runs twistgate")
    parser.add_argument("--contender-python", default=str(HERE / ".venv" / "bin" / "python"),
                        help="runs the reference contenders (bench/setup.sh makes it; else --python)")
    parser.add_argument("--pypy", default=str(ROOT / ".venv-pypy" / "bin" / "python"),
                        help="the PyPy venv whose twistd runs the twistgate-pypy contender (tests/pypy.sh makes it)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", help="also write the raw runs here")
    args = parser.parse_args()
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            log(f"{tool} is not installed (bench/setup.sh)")
            return 2
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    proxy_cpu, load_cpu = ("0", "1") if pin else (None, None)
    workdir = Path(tempfile.mkdtemp(prefix="twistgate-compare."))
    workdir.chmod(0o755)  # nginx workers may run as another user
    procs = Processes(workdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        return run(args, procs, workdir, proxy_cpu, load_cpu)
    finally:
        procs.stop_all()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")


def run(args, procs: Processes, workdir: Path, proxy_cpu, load_cpu) -> int:
    base = args.base_port
    up_port = base + 1
    contenders: Dict[str, int] = {"direct": up_port}
    pids: Dict[str, int] = {}
    nginx = shutil.which("nginx")
    if nginx:
        (workdir / "64k.bin").write_bytes((b"0123456789abcdef" * 4096)[:65536])
        (workdir / "64k.bin").chmod(0o644)
        (workdir / "upstream.conf").write_text(nginx_conf(workdir, "upstream", (
            "sendfile on;\n"
            f"server {{ listen 127.0.0.1:{up_port} backlog=4096;\n"
            f"  location = /64k {{ default_type application/octet-stream; alias {workdir}/64k.bin; }}\n"
            f"  location / {{ default_type text/plain; return 200 \"{SMALL_BODY[:-1]}\\n\"; }}\n}}\n"
        )))
        (workdir / "nginx.conf").write_text(nginx_conf(workdir, "nginx", (
            f"upstream up {{ server 127.0.0.1:{up_port}; keepalive 256; keepalive_requests 100000000; }}\n"
            f"server {{ listen 127.0.0.1:{base + 101} backlog=4096;\n"
            "  location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
            "               proxy_buffers 8 16k; proxy_buffer_size 16k; }\n}\n"
        )))
        up = procs.start("upstream", [nginx, "-p", f"{workdir}/", "-e", f"{workdir}/upstream.err", "-c", f"{workdir}/upstream.conf"], load_cpu)
    else:
        up = procs.start("upstream", [args.python, str(HERE / "upstream.py"), str(up_port)], load_cpu)
    if not wait_ready(up_port, up, "upstream"):
        return 2
    if nginx:
        proc = procs.start("nginx", [nginx, "-p", f"{workdir}/", "-e", f"{workdir}/nginx.err", "-c", f"{workdir}/nginx.conf"], proxy_cpu)
        if wait_ready(base + 101, proc, "nginx"):
            contenders["nginx"], pids["nginx"] = base + 101, proc.pid
    wanted = [name for name in args.extra.split(",") if name]
    scripts = {"twisted-rp": "twisted_revproxy.py", "aiohttp-uvloop": "aiohttp_proxy.py"}
    headers: Dict[str, List[str]] = {}
    twistd = str(Path(args.python).parent / "twistd")
    for index, name in enumerate(wanted):
        port = base + 102 + index
        if name in scripts:
            python = args.contender_python if Path(args.contender_python).exists() else args.python
            proc = procs.start(name, [python, str(HERE / "proxies" / scripts[name]), str(port), str(up_port)], proxy_cpu)
        elif name == "engine":
            proc = procs.start(name, [args.python, str(HERE / "engine_proxy.py"), "--port", str(port),
                                      "--upstream", f"http://127.0.0.1:{up_port}"], proxy_cpu)
        elif name == "twistgate-pypy":
            pypy_twistd = Path(args.pypy).parent / "twistd"
            if not pypy_twistd.exists():
                log(f"twistgate-pypy left out: no {pypy_twistd} (bash tests/pypy.sh makes .venv-pypy)")
                continue
            proc = procs.start(name, [str(pypy_twistd), "-n", "--pidfile=", "twistgate", "--config", args.config],
                               proxy_cpu, env={"BENCH_PORT": str(port), "BENCH_UPSTREAM_PORT": str(up_port),
                                               **PYPY_ENVIRONMENT})
        elif name == "twistgate-full":
            secret = os.urandom(32).hex()
            token = subprocess.run([args.python, str(HERE / "make_token.py"), secret], capture_output=True,
                                   text=True, check=True).stdout.strip()
            headers[name] = [f"Authorization: Bearer {token}"]
            proc = procs.start(name, [twistd, "-n", "--pidfile=", "twistgate", "--config", str(HERE / "gw-full.yaml")],
                               proxy_cpu, env={"BENCH_PORT": str(port), "BENCH_UPSTREAM_PORT": str(up_port),
                                               "BENCH_JWT_SECRET": secret,
                                               "BENCH_ACCESS_LOG": str(workdir / "access.log")})
        else:
            log(f"unknown contender {name!r} (known: {', '.join([*scripts, 'engine', 'twistgate-full', 'twistgate-pypy'])})")
            return 2
        if wait_ready(port, proc, name, headers.get(name, [])):
            contenders[name], pids[name] = port, proc.pid
        else:
            log(f"{name} left out (not installed? see bench/setup.sh; its log: {workdir}/{name}.log)")
    gw_port = base + 200
    proc = procs.start("twistgate", [twistd, "-n", "--pidfile=", "twistgate", "--config", args.config], proxy_cpu,
                       env={"BENCH_PORT": str(gw_port), "BENCH_UPSTREAM_PORT": str(up_port)})
    if wait_ready(gw_port, proc, "twistgate"):
        contenders["twistgate"], pids["twistgate"] = gw_port, proc.pid
    else:
        log(f"twistgate left out; its log: {workdir}/twistgate.log")
    runs: List[dict] = []
    names = list(contenders)
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for scenario in args.scenarios.split(","):
            path, connections = SCENARIOS[scenario]
            for name in order:
                port = contenders[name]
                extra = headers.get(name, [])
                run_wrk(port, path, connections, args.warmup, load_cpu, extra)
                before = tree_cpu_seconds(pids[name]) if name in pids else None
                result = run_wrk(port, path, connections, args.duration, load_cpu, extra)
                if before is not None and result["requests"]:
                    result["us_per_req"] = (tree_cpu_seconds(pids[name]) - before) * 1e6 / result["requests"]
                runs.append({"rep": rep, "scenario": scenario, "contender": name, **result})
                log(f"rep {rep + 1}/{args.reps} {scenario} {name}: {result['rps']:.0f} rps")
    peaks = {name: tree_peak_rss_mib(pid) for name, pid in pids.items()}
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "peak_rss_mib": peaks}, indent=1))
    print(report(runs, names, args, peaks))
    return 0 if "twistgate" in contenders else 1


def report(runs: List[dict], names: List[str], args, peaks: Dict[str, float]) -> str:
    def cell(scenario: str, name: str) -> List[dict]:
        return [r for r in runs if r["scenario"] == scenario and r["contender"] == name]

    def paired(scenario: str, name: str, against: str) -> str:
        ratios = []
        for rep in range(args.reps):
            ours = [r["rps"] for r in runs if (r["rep"], r["scenario"], r["contender"]) == (rep, scenario, name)]
            theirs = [r["rps"] for r in runs if (r["rep"], r["scenario"], r["contender"]) == (rep, scenario, against)]
            if ours and theirs and theirs[0]:
                ratios.append(ours[0] / theirs[0])
        return f"{statistics.median(ratios):.3f}" if ratios else "-"

    lines = [f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit "
             f"{subprocess.run(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip() or 'none'}; "
             f"{args.reps} reps x {args.duration} s after {args.warmup} s warm-up; config {args.config}", "",
             "| scenario | contender | rps | p50 ms | p99 ms | errors | x nginx | x direct | x aiohttp-uvloop "
             "| proxy us/req | peak RSS MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for scenario in args.scenarios.split(","):
        for name in names:
            found = cell(scenario, name)
            if not found:
                continue
            cpu = [r["us_per_req"] for r in found if "us_per_req" in r]
            lines.append(
                f"| {scenario} | {name} | {statistics.median(r['rps'] for r in found):.0f} | "
                f"{statistics.median(r['p50'] for r in found):.2f} | {statistics.median(r['p99'] for r in found):.2f} | "
                f"{sum(r['errors'] for r in found)} | {paired(scenario, name, 'nginx')} | {paired(scenario, name, 'direct')} | "
                f"{paired(scenario, name, 'aiohttp-uvloop')} | {f'{statistics.median(cpu):.0f}' if cpu else '-'} | "
                f"{f'{peaks[name]:.0f}' if name in peaks else '-'} |"
            )
    lines += ["", "Peak RSS: the proxy's processes together, at their highest over the whole run (VmHWM)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
