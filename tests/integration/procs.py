"""
Real processes for the scale-out tests: twistd gateways (single or with
workers), a small threaded upstream, and blocking HTTP clients.

Output goes to files (never a pipe nobody reads: a chatty gateway would
block on a full pipe).  Every process started here is stopped by its fixture.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from twistgate.testing_twistd import free_port

__all__ = ["Gateway", "Upstream", "admin_json", "free_port", "http_get", "load", "wait_port", "wait_until"]

BIN = Path(sys.executable).parent

#: Start-up waits are this much longer on PyPy, whose twistd (the tests' own
#: interpreter) starts slower: listening after 3.1 s against CPython's 1.2 on
#: an idle 2-core machine; the whole suite on PyPy, on a loaded one, overran
#: 15 s for a twistd and 30 s for a gateway with workers.  A process that
#: exits is still reported at once.
START_SLOWDOWN = 3.0 if sys.implementation.name == "pypy" else 1.0


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0, what: str = "twistd") -> None:
    """Until something listens on 127.0.0.1:`port`; fails at once, with its output, if `proc` ends first."""
    deadline = time.monotonic() + timeout * START_SLOWDOWN
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


def wait_until(check: Any, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class Gateway:
    """``twistd -n twistgate --config FILE`` in its own process."""

    def __init__(self, directory: Path, text: str, *, name: str = "gw", env: Optional[Dict[str, str]] = None,
                 twistd: Optional[str] = None) -> None:
        self.directory = directory
        self.config = directory / f"{name}.yaml"
        self.config.write_text(text)
        self.log_path = directory / f"{name}.log"
        self._log = open(self.log_path, "w")
        command = [twistd or str(BIN / "twistd"), "-n", "--pidfile=", "--logfile=-", "twistgate", "--config", str(self.config)]
        self.proc = subprocess.Popen(
            command, cwd=directory, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rewrite(self, text: str) -> None:
        self.config.write_text(text)

    def wait_ready(self, admin_port: int, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"twistd exited early ({self.proc.returncode}):\n{self.log()[-4000:]}")
            try:
                return http_get(admin_port, "/readyz", timeout=1.0)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout * START_SLOWDOWN, what="/readyz")

    def wait_listening(self, port: int, timeout: float = 30.0) -> None:
        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"twistd exited early ({self.proc.returncode}):\n{self.log()[-4000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(listening, timeout * START_SLOWDOWN, what=f"port {port}")

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> Optional[int]:
        self.send(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return self.proc.returncode


def http_get(port: int, path: str, headers: Optional[Dict[str, str]] = None, *, method: str = "GET",
             body: Optional[bytes] = None, timeout: float = 10.0) -> Tuple[int, Dict[str, str], bytes]:
    """One request on a new connection: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def admin_json(port: int, path: str, token: str = "s3cret", method: str = "GET") -> Tuple[int, Any]:
    status, _, body = http_get(port, path, {"Authorization": f"Bearer {token}"}, method=method)
    return status, json.loads(body)


class Upstream:
    """A threaded HTTP upstream: ``/`` answers at once, ``/slow?ms=N`` after N ms,
    ``/hold`` waits until ``release()``; ``held`` counts requests waiting."""

    def __init__(self) -> None:
        self.release_event = threading.Event()
        self.held = 0
        self.count = 0
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with upstream.lock:
                    upstream.count += 1
                if self.path.startswith("/hold"):
                    with upstream.lock:
                        upstream.held += 1
                    upstream.release_event.wait(30)
                    with upstream.lock:
                        upstream.held -= 1
                elif self.path.startswith("/slow"):
                    ms = int(self.path.partition("ms=")[2] or 500)
                    time.sleep(ms / 1000.0)
                body = b"ok " + self.path.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client gone (a killed worker's connection) is expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def release(self) -> None:
        self.release_event.set()

    def close(self) -> None:
        self.release_event.set()
        self.server.shutdown()
        self.server.server_close()


def load(port: int, path: str, seconds: float, threads: int = 4) -> Tuple[int, List[str]]:
    """Requests from ``threads`` clients (a new connection each) for ``seconds``: (answered, failures)."""
    failures: List[str] = []
    done = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() < stop:
            try:
                status = http_get(port, path, timeout=10)[0]
                problem = None if status == 200 else f"status {status}"
            except Exception as error:  # a reset, a refused connection: a failed request
                problem = repr(error)
            with lock:
                if problem is None:
                    done[0] += 1
                else:
                    failures.append(problem)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return done[0], failures
