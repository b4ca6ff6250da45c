"""
The gateway as users run it: `twistd -n twistgate --config FILE` in its own
process, the `twistgate` command, SIGTERM with requests in flight, and a
third-party plugin installed with pip (into a temporary directory). The
installs themselves: test_install.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from twistgate.testing_twistd import free_port
from tests.integration.procs import wait_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent




class Twistd:
    def __init__(self, config: Path, cwd: Path, env: Optional[dict] = None) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile=-", "twistgate", "--config", str(config)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: List[str] = []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal and wait; twistd re-raises the signal after a clean shutdown, so -SIGTERM is normal."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.output.append(out or "")
        return self.proc.returncode


@pytest.fixture
def run_twistd(tmp_path: Path) -> Iterator:
    started: List[Twistd] = []

    def run(config_text: str, port: int, env: Optional[dict] = None) -> Twistd:
        config = tmp_path / "gw.yaml"
        config.write_text(config_text)
        t = Twistd(config, tmp_path, env)
        started.append(t)
        wait_port(port, t.proc)
        return t

    yield run
    for t in started:
        t.stop(signal.SIGKILL)


def _get(url: str, timeout: float = 10.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _gw_yaml_on_free_ports() -> "tuple[str, int, int]":
    """etc/gw.yaml exactly as shipped, moved to free ports so the test never collides."""
    gw, demo = free_port(), free_port()
    text = (ROOT / "etc/gw.yaml").read_text()
    assert "tcp:8080" in text and "5001" in text
    text = text.replace("tcp:8080", f"tcp:{gw}:interface=127.0.0.1").replace("5001", str(demo))
    return text, gw, demo


def test_first_run_config_serves_the_demo(run_twistd):
    """The README's run command: etc/gw.yaml answers at once with the demo backends."""
    text, gw, _ = _gw_yaml_on_free_ports()
    t = run_twistd(text, gw)
    status, headers, body = _get(f"http://127.0.0.1:{gw}/api/users")
    assert status == 200
    assert json.loads(body)["users"][0]["name"]
    assert headers["X-Request-Id"]
    status, _, body = _get(f"http://127.0.0.1:{gw}/api/users/1")
    assert status == 200 and json.loads(body)["id"] == 1
    for path in ("/api/orders", "/api/products", "/health"):
        assert _get(f"http://127.0.0.1:{gw}{path}")[0] == 200, path
    status, _, body = _get(f"http://127.0.0.1:{gw}/no/such/route")
    assert status == 404 and json.loads(body)["error"] == "route_not_found"
    assert t.stop() in (0, -signal.SIGTERM)
    assert "Server Shut Down." in t.output[-1]
    assert "Traceback" not in t.output[-1]


def test_invalid_config_refuses_to_start(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("listeners:\n  - name: p\n    endpoint: tcp:0\nroutes:\n  - name: r\n    path: /x\n    upstrem: a\n")
    proc = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "twistgate", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"{config}:7: routes[0].upstrem" in out
    assert "did you mean 'upstream'" in out


def test_twistgate_check_and_routes_commands(tmp_path: Path):
    text, _, _ = _gw_yaml_on_free_ports()
    good = tmp_path / "gw.yaml"
    good.write_text(text)
    ok = subprocess.run([str(BIN / "twistgate"), "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    routes = subprocess.run([str(BIN / "twistgate"), "routes", str(good)], capture_output=True, text=True)
    assert routes.returncode == 0, routes.stderr
    for name in ("users", "orders", "products", "health", "echo"):
        assert re.search(rf"\b{name}\b", routes.stdout), name
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("upstream: demo", "upstream: demoo", 1))
    failed = subprocess.run([str(BIN / "twistgate"), "check", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "routes[0].upstream" in failed.stderr and "demoo" in failed.stderr


def test_sigterm_lets_requests_in_flight_finish(run_twistd):
    """SIGTERM: stop accepting, finish what is in flight (here a 1.5 s answer), then exit 0."""
    gw, demo = free_port(), free_port()
    config = f"""
listeners: [{{name: p, endpoint: "tcp:{gw}:interface=127.0.0.1"}}]
demo: {{endpoint: "tcp:{demo}:interface=127.0.0.1"}}
limits: {{drain_timeout: 10s}}
upstreams:
  demo: {{targets: [{{url: "http://127.0.0.1:{demo}"}}]}}
routes:
  - {{name: all, path: "/*", upstream: demo}}
"""
    t = run_twistd(config, gw)
    result = {}

    def slow_request():
        result["reply"] = _get(f"http://127.0.0.1:{gw}/slow/1500", timeout=15)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)
    t.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw), timeout=1).close()  # no longer accepting
    thread.join(15)
    assert result["reply"][0] == 200
    assert t.stop() in (0, -signal.SIGTERM)
    assert "Server Shut Down." in t.output[-1]
    assert "draining 1 request in flight" in t.output[-1]


def test_third_party_plugin_through_twistd(run_twistd, example_plugin_site):
    """A plugin installed with pip (into a directory on PYTHONPATH) is found through the `twistgate` entry point group and runs per route."""
    gw, demo = free_port(), free_port()
    config = f"""
listeners: [{{name: p, endpoint: "tcp:{gw}:interface=127.0.0.1"}}]
demo: {{endpoint: "tcp:{demo}:interface=127.0.0.1"}}
upstreams:
  demo: {{targets: [{{url: "http://127.0.0.1:{demo}"}}]}}
routes:
  - name: users
    path: /users/*
    upstream: demo
    plugins:
      example_headers: {{response_headers: {{X-Example: "from-plugin"}}, block_paths: [/users/2]}}
  - {{name: health, path: /health, upstream: demo}}
"""
    t = run_twistd(config, gw, env={"PYTHONPATH": str(example_plugin_site)})
    status, headers, _ = _get(f"http://127.0.0.1:{gw}/users/1")
    assert status == 200 and headers.get("X-Example") == "from-plugin"
    status, _, body = _get(f"http://127.0.0.1:{gw}/users/2")
    assert status == 403 and json.loads(body) == {"blocked": "/users/2"}
    status, headers, _ = _get(f"http://127.0.0.1:{gw}/health")
    assert status == 200 and "X-Example" not in headers  # per route: not on this one
    assert t.stop() in (0, -signal.SIGTERM)
    assert "Server Shut Down." in t.output[-1]
