"""
The gateway as users run it, for end-to-end tests: ``twistd -n twistgate
--config FILE`` in a subprocess, on free ports of 127.0.0.1, in front of a
real upstream (`EchoServer`, a thread of this process).  Plain blocking
code: no reactor is needed in the test process.

    with EchoServer() as upstream:
        gw = RunningGateway(yaml_text, tmp_path, upstream=upstream)
        reply = gw.get("/users/1", headers={"X-Tenant": "acme"})
        assert reply.status == 200 and reply.json()["path"] == "/users/1"
        gw.reload()                        # SIGHUP, and wait until it is done
        assert gw.stop() == 0              # SIGTERM, a clean exit

The YAML may leave out ``listeners`` and ``upstreams`` (a listener on a free
port, an upstream ``app`` on `upstream`), or use the placeholders
``{port}`` (the listener's free port) and ``{upstream}`` (the upstream's
URL).  twistd imports what this process can (its ``sys.path`` becomes
``PYTHONPATH``), so a plugin installed for the tests is found through its
entry point, as in production.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml

__all__ = ["EchoServer", "Reply", "RunningGateway", "free_port"]

_TWISTD = "from twisted.scripts.twistd import run; run()"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Reply:
    """What came back: ``status``, ``reason``, ``headers`` (names lower-case), ``body``."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str], body: bytes) -> None:
        self.status, self.reason, self.headers, self.body = status, reason, dict(headers), body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.reason} {self.body[:60]!r}>"


def http_request(
    url: str, method: str = "GET", headers: Optional[Mapping[str, str]] = None, body: Optional[bytes] = None, timeout: float = 10.0
) -> Reply:
    """A blocking request (urllib); an error status is a `Reply` too."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.reason, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.reason, {k.lower(): v for k, v in error.headers.items()}, error.read())


class EchoServer:
    """
    A real upstream on a free port: answers every request ``200`` with JSON
    describing it (``method``, ``path``, ``headers``, ``body``) and keeps them
    in `requests`.
    """

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        echo = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k: v for k, v in self.headers.items()},
                    "body": self.rfile.read(length).decode("utf-8", "replace") if length else "",
                }
                echo.requests.append(seen)
                data = json.dumps(seen).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "EchoServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RunningGateway:
    """
    ``twistd -n twistgate --config <workdir>/gw.yaml``, started now; returns
    once it serves (the log says so), or raises with its output when it
    exits or does not start within `timeout`.

    :ivar port: the listener's port (when the YAML used ``{port}`` or had no listeners).
    :ivar output: everything twistd logged so far, as one string (`lines` one by one).
    """

    def __init__(
        self,
        config: str,
        workdir: Path,
        *,
        upstream: Optional[EchoServer] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: float = 30.0,
        wait: bool = True,
    ) -> None:
        self.port = free_port()
        self.workdir = Path(workdir)
        self.config_path = self.workdir / "gw.yaml"
        self.upstream = upstream
        self.write(config)
        path = os.pathsep.join([p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", "--logfile=-", "twistgate", "--config", str(self.config_path)],
            cwd=self.workdir, env={**os.environ, "PYTHONPATH": path, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: List[str] = []
        self._eof = False
        self._seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        if wait:
            self.wait_for("twistgate serving", timeout)

    def write(self, config: str) -> None:
        """Write the configuration file (placeholders filled; defaults added); `reload` reads it again."""
        text = textwrap.dedent(config)
        try:
            present = yaml.safe_load(text.replace("{port}", "0").replace("{upstream}", "http://x")) or {}
        except yaml.YAMLError:
            present = {}
        if isinstance(present, dict):
            if "listeners" not in present:
                text += '\nlisteners: [{name: test, endpoint: "tcp:{port}:interface=127.0.0.1"}]\n'
            if "upstreams" not in present:
                text += '\nupstreams: {app: {targets: [{url: "{upstream}"}]}}\n'
        text = text.replace("{port}", str(self.port))
        if self.upstream is not None:
            text = text.replace("{upstream}", self.upstream.url)
        self.config_path.write_text(text)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self._eof = True
            self._seen.notify_all()

    @property
    def output(self) -> str:
        with self._seen:
            return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0, *, after: int = 0) -> str:
        """Wait until a line (from line number `after` on) contains `text`; that line."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines[after:]:
                    if text in line:
                        return line
                if self._eof:
                    self.proc.wait()
                    raise AssertionError(f"twistd exited ({self.proc.returncode}) before logging {text!r}:\n{''.join(self.lines)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"twistd did not log {text!r} within {timeout}s:\n{''.join(self.lines)}")
                self._seen.wait(min(left, 0.1))

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method: str, path: str, headers: Optional[Mapping[str, str]] = None, body: Optional[bytes] = None) -> Reply:
        return http_request(self.url(path), method, headers, body)

    def get(self, path: str, headers: Optional[Mapping[str, str]] = None) -> Reply:
        return self.request("GET", path, headers)

    def reload(self, config: Optional[str] = None, timeout: float = 30.0) -> str:
        """Rewrite the file (if `config` is given), SIGHUP, and wait for the outcome; the log line (raises if rejected)."""
        if config is not None:
            self.write(config)
        after = len(self.lines)
        self.proc.send_signal(signal.SIGHUP)
        line = self.wait_for("configuration reload", timeout, after=after)
        if "rejected" in line:
            raise AssertionError(f"the reload was rejected:\n{''.join(self.lines[after:])}")
        return line

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: 0 after a clean shutdown (twistd re-raises SIGTERM, seen here as 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        status = self.proc.returncode
        return 0 if status == -signal.SIGTERM else status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
