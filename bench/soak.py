"""
A soak test: twistgate under steady load for a long time while faults are
injected, judged on what its clients saw and on its memory and descriptors.

    python bench/soak.py [--duration 1800] [--clients 8] [--workers N] [--json FILE]

It starts, on 127.0.0.1 and free ports: two upstream servers, a real
``redis-server`` (the rate limit's backend) and ``twistd -n twistgate`` with
retries, health checks, a breaker and a Redis-backed rate limit; then keeps
``--clients`` keep-alive clients busy (GETs and POSTs) plus slow uploaders,
and on a schedule scaled to ``--duration``:

* at 20 % one upstream is killed (SIGKILL) and at 35 % started again;
* at 50 % Redis is restarted (the limit is ``on_backend_error: allow``);
* every ``--reload-every`` seconds the configuration is reloaded through
  the admin API;
* all along, slow clients send their bodies in small pieces (within the
  gateway's body timeout).

The verdict (exit status 0 when every line holds):

* zero unexpected errors: every answer a 200 (no 5xx, no connection error);
* RSS growth under 5 % between the end of the warm-up (the first 20 % of the
  run) and the end;
* open file descriptors flat (the end within 10 of the warm-up's).

Everything it starts is stopped on exit.  Standard library only, besides the
repository's own virtualenv for twistd (``--twistd``, default
``.venv/bin/twistd``) and its Python for the upstreams.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "soak-admin-token"

UPSTREAM = r"""
import sys
from twisted.internet import reactor, endpoints
from twisted.web.resource import Resource
from twisted.web.server import Site

class App(Resource):
    isLeaf = True
    def render_GET(self, request):
        return b"ok " + sys.argv[2].encode() + b"\n"
    def render_POST(self, request):
        return b"got %d\n" % len(request.content.read())

site = Site(App())
site.log = lambda request: None
endpoints.serverFromString(reactor, "tcp:%s:interface=127.0.0.1" % sys.argv[1]).listen(site)
reactor.run()
"""

CONFIG = """
listeners:
  - {{name: soak, endpoint: "tcp:{port}:interface=127.0.0.1"}}
admin: {{endpoint: "tcp:{admin}:interface=127.0.0.1", token: {token}}}
{workers}
limits: {{max_request_body: 1MiB, request_timeout: 30s}}
rate_limiting: {{backend: "redis://127.0.0.1:{redis}/0", on_backend_error: allow}}
upstreams:
  app:
    targets: [{{url: "http://127.0.0.1:{a}"}}, {{url: "http://127.0.0.1:{b}"}}]
    timeouts: {{connect: 500ms, read: 5s}}
    retry: {{attempts: 3, backoff: 10ms, max_backoff: 100ms, on: [connect_failure, reset, 502, 503, 504]}}
    circuit_breaker: {{failure_threshold: 3, recovery_timeout: 2s}}
    health_check: {{path: /health, interval: 500ms, timeout: 300ms, unhealthy_threshold: 2, healthy_threshold: 1}}
routes:
  - name: api
    path: /api/*
    upstream: app
    retry: {{non_idempotent: true}}
    rate_limit: {{rate: 1000000/min, key: ip}}
    headers: {{response: {{set: {{X-Generation: "{generation}"}}}}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Processes:
    """Everything started here, stopped on exit."""

    def __init__(self) -> None:
        self.running: Dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: List[str], **kwargs: Any) -> subprocess.Popen:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        self.running[name] = process
        return process

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.running.pop(name, None)
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.kill(name, signal.SIGTERM)


class Tally:
    """What the clients saw, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.unexpected: Dict[str, int] = {}

    def record(self, outcome: str) -> None:
        with self.lock:
            if outcome == "200":
                self.ok += 1
            else:
                self.unexpected[outcome] = self.unexpected.get(outcome, 0) + 1


def client_loop(port: int, stop: threading.Event, tally: Tally, index: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    while not stop.is_set():
        n += 1
        try:
            if n % 4 == 0:
                conn.request("POST", f"/api/items?c={index}", body=b"x" * 512, headers={"Idempotency-Key": f"{index}-{n}"})
            else:
                conn.request("GET", f"/api/items/{n}?c={index}")
            response = conn.getresponse()
            response.read()
            tally.record(str(response.status))
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        except Exception as error:  # a client-visible failure
            tally.record(type(error).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def slow_uploader(port: int, stop: threading.Event, tally: Tally) -> None:
    """A POST whose 4 KiB body arrives in 16 pieces over about 4 s (within the body timeout)."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"POST /api/upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 4096\r\nIdempotency-Key: slow\r\n\r\n")
                for _ in range(16):
                    time.sleep(0.25)
                    sock.sendall(b"y" * 256)
                head = sock.recv(65536)
                tally.record(head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/1.1 ") else "no answer")
        except Exception as error:
            tally.record(type(error).__name__)


def sample(pid: int) -> Dict[str, int]:
    """RSS (KiB) and open descriptors of `pid` and its children (worker processes)."""
    pids = [pid] + _children(pid)
    rss = fds = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except (OSError, StopIteration):
            continue
    return {"rss_kib": rss, "fds": fds}


def _children(pid: int) -> List[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(p) for p in found]


def reload(admin: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)
    try:
        conn.request("POST", "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
        return response.status == 200 and bool(body.get("ok"))
    finally:
        conn.close()


def run(args: argparse.Namespace) -> Dict[str, Any]:
    redis = shutil.which("redis-server")
    if redis is None:
        raise SystemExit("soak: redis-server not found (apt-get install redis-server)")
    work = Path(tempfile.mkdtemp(prefix="twistgate-soak-"))
    procs = Processes()
    ports = {name: free_port() for name in ("a", "b", "redis", "port", "admin")}
    upstream_script = work / "upstream.py"
    upstream_script.write_text(UPSTREAM)
    config = work / "gw.yaml"
    workers = f"workers: {args.workers}" if args.workers else ""

    def write_config(generation: int) -> None:
        config.write_text(CONFIG.format(token=TOKEN, workers=workers, generation=generation, **ports))

    def start_upstream(name: str) -> None:
        procs.start(name, [sys.executable, str(upstream_script), str(ports[name]), name])
        wait_port(ports[name])

    def start_redis() -> None:
        procs.start("redis", [redis, "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        wait_port(ports["redis"])

    stop = threading.Event()
    tally = Tally()
    samples: List[Dict[str, Any]] = []
    events: List[str] = []
    try:
        start_upstream("a")
        start_upstream("b")
        start_redis()
        write_config(1)
        gateway = procs.start(
            "gateway",
            [args.twistd, "-n", "--pidfile=", "--logfile", str(work / "twistd.log"), "twistgate", "--config", str(config)],
            cwd=str(ROOT),
        )
        wait_port(ports["port"], timeout=60)
        wait_port(ports["admin"], timeout=60)
        threads = [threading.Thread(target=client_loop, args=(ports["port"], stop, tally, i), daemon=True) for i in range(args.clients)]
        threads += [threading.Thread(target=slow_uploader, args=(ports["port"], stop, tally), daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        duration = args.duration
        schedule = [
            (0.20 * duration, "kill upstream a", lambda: procs.kill("a")),
            (0.35 * duration, "restart upstream a", lambda: start_upstream("a")),
            (0.50 * duration, "restart redis", lambda: (procs.kill("redis"), time.sleep(1.0), start_redis())),
        ]
        next_reload = args.reload_every
        generation = 1
        while (elapsed := time.monotonic() - started) < duration:
            while schedule and schedule[0][0] <= elapsed:
                _, what, action = schedule.pop(0)
                action()
                events.append(f"{elapsed:.0f}s {what}")
            if elapsed >= next_reload:
                generation += 1
                write_config(generation)
                ok = reload(ports["admin"])
                events.append(f"{elapsed:.0f}s reload to generation {generation}: {'ok' if ok else 'FAILED'}")
                if not ok:
                    tally.record("reload failed")
                next_reload += args.reload_every
            samples.append({"t": round(elapsed, 1), **sample(gateway.pid)})
            time.sleep(min(2.0, max(0.1, duration / 200)))
        stop.set()
        for thread in threads:
            thread.join(timeout=35)
        if gateway.poll() is not None:
            tally.record(f"gateway exited {gateway.returncode}")
    finally:
        stop.set()
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return verdict(args, tally, samples, events)


def verdict(args: argparse.Namespace, tally: Tally, samples: List[Dict[str, Any]], events: List[str]) -> Dict[str, Any]:
    def median(rows: List[Dict[str, Any]], key: str) -> float:
        return statistics.median(row[key] for row in rows) if rows else 0.0

    warm = [s for s in samples if 0.15 * args.duration <= s["t"] <= 0.25 * args.duration]
    end = [s for s in samples if s["t"] >= 0.9 * args.duration]
    rss_warm, rss_end = median(warm, "rss_kib"), median(end, "rss_kib")
    fds_warm, fds_end = median(warm, "fds"), median(end, "fds")
    growth = (rss_end - rss_warm) / rss_warm * 100 if rss_warm else 0.0
    checks = {
        "no unexpected errors": not tally.unexpected,
        "RSS growth under 5 % after warm-up": growth < 5.0,
        "descriptors flat (within 10)": abs(fds_end - fds_warm) <= 10,
    }
    return {
        "duration_s": args.duration,
        "workers": args.workers or 1,
        "requests_ok": tally.ok,
        "unexpected": tally.unexpected,
        "rss_kib_after_warmup": rss_warm,
        "rss_kib_at_end": rss_end,
        "rss_growth_percent": round(growth, 2),
        "rss_mib_by_tenth": rss_by_tenth(samples, args.duration),
        "fds_after_warmup": fds_warm,
        "fds_at_end": fds_end,
        "events": events,
        "checks": checks,
        "passed": all(checks.values()),
    }


def rss_by_tenth(samples: List[Dict[str, Any]], duration: float) -> List[float]:
    """RSS (MiB) at the end of each tenth of the run: the curve, to tell a leak from a settling heap."""
    out: List[float] = []
    for tenth in range(1, 11):
        upto = [s for s in samples if s["t"] <= tenth * duration / 10]
        if upto:
            out.append(round(upto[-1]["rss_kib"] / 1024, 1))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load (default 1800)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="the gateway's `workers:` (default: not set)")
    parser.add_argument("--reload-every", type=float, default=60.0, help="seconds between reloads (default 60)")
    parser.add_argument("--twistd", default=str(ROOT / ".venv" / "bin" / "twistd"))
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    for name, ok in report["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}", file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
