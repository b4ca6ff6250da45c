"""
Issue 17 item 1, under the real `twistd`: the plugins' ``on_startup`` run
before anything is served.  twistd binds the ports first; a request made
while a hook is still running waits, and is answered only once the hooks
are done; when a hook fails, the process exits non-zero naming the plugin
and the reason, and that request is never answered.

The plugin is `slow_start` of the test-only package in
tests/plugins/broken-extensions, pip-installed into a temporary directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

from tests.integration.test_twistd import BIN
from twistgate.testing_twistd import free_port

# Short: each test waits for the hooks, and the machine is shared.
DELAY = 1.0


def _start_twistd(tmp_path: Path, site: Path, plugin_options: str, demo: int, gw: int) -> subprocess.Popen:
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""
listeners: [{{name: p, endpoint: "tcp:{gw}:interface=127.0.0.1"}}]
demo: {{endpoint: "tcp:{demo}:interface=127.0.0.1"}}
upstreams:
  demo: {{targets: [{{url: "http://127.0.0.1:{demo}"}}]}}
routes:
  - {{name: all, path: "/*", upstream: demo}}
plugins:
  slow_start: {plugin_options}
"""
    )
    return subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile=-", "twistgate", "--config", str(config)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _connect(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> socket.socket:
    """A TCP connection to the port twistd bound (accepted by the kernel, whether or not twistd accepts it yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=0.2)
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"twistd exited before binding:\n{proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.02)
    raise AssertionError(f"nothing bound on {port}")


def _exchange(sock: socket.socket, timeout: float) -> Dict[str, object]:
    """Send a GET on `sock`; what came back, and when, read until the server closes or `timeout`."""
    sent = time.monotonic()
    sock.settimeout(timeout)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    chunks: List[bytes] = []
    first: Optional[float] = None
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            if first is None:
                first = time.monotonic() - sent
            chunks.append(chunk)
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        sock.close()
    return {"data": b"".join(chunks), "after": first}


def _finish(proc: subprocess.Popen, timeout: float = 20.0) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"twistd did not exit by itself:\n{out}")
    return out


def test_a_request_waits_for_on_startup(extension_packages, tmp_path: Path):
    """The port is bound early, but the request made during on_startup is answered after it, by a started plugin."""
    gw, demo = free_port(), free_port()
    proc = _start_twistd(tmp_path, extension_packages, f"{{delay: {DELAY}}}", demo, gw)
    try:
        result = _exchange(_connect(gw, proc), timeout=15)
        head = result["data"].split(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 200"), result
        assert b"X-Started: yes" in head  # answered by a plugin whose on_startup had finished
    finally:
        proc.send_signal(signal.SIGTERM)
        out = _finish(proc)
    assert "twistgate serving" in out


def test_a_failing_on_startup_exits_non_zero_and_serves_nothing(extension_packages, tmp_path: Path):
    """Failing after a delay: the request made meanwhile is never answered; exit 1, naming the plugin and the reason."""
    gw, demo = free_port(), free_port()
    proc = _start_twistd(tmp_path, extension_packages, f"{{delay: {DELAY}, fail: no database for quotas}}", demo, gw)
    result: Dict[str, object] = {}
    client = threading.Thread(target=lambda: result.update(_exchange(_connect(gw, proc), timeout=15)))
    client.start()
    out = _finish(proc)
    client.join(20)
    assert result["data"] == b"", result  # connected, never answered
    assert proc.returncode == 1, out
    assert "plugin 'slow_start' failed to start: RuntimeError: no database for quotas" in out
    assert "twistgate is not serving" in out
    assert "twistgate serving" not in out


def test_a_synchronous_on_startup_failure_exits_at_once(extension_packages, tmp_path: Path):
    """Failing at once, before twistd even runs its reactor: the process still exits 1 instead of serving on."""
    gw, demo = free_port(), free_port()
    proc = _start_twistd(tmp_path, extension_packages, "{fail: bad credentials}", demo, gw)
    out = _finish(proc)
    assert proc.returncode == 1, out
    assert "plugin 'slow_start' failed to start: RuntimeError: bad credentials" in out
    with socket.socket() as probe:  # the port is closed again
        assert probe.connect_ex(("127.0.0.1", gw)) != 0
