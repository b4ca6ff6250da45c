"""
Issue 14, operator experience: a gateway that cannot start says why in one
line, exits non-zero and prints no traceback, under the real ``twistd``:
a port already in use (a listener's, the admin listener's), a missing
certificate file, an unreadable private key, a port below 1024 without the
privilege to bind it (with the hint how to run non-root on 80/443).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import List, Optional

import pytest

from tests.integration.test_twistd import BIN
from twistgate.testing_twistd import free_port

pytestmark = pytest.mark.integration


def _twistd(tmp_path: Path, config: str, prefix: Optional[List[str]] = None) -> subprocess.CompletedProcess:
    path = tmp_path / "gw.yaml"
    path.write_text(config)
    return subprocess.run(
        (prefix or []) + [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile=-", "twistgate", "--config", str(path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _config(port: int, extra: str = "") -> str:
    return f"""
listeners:
  - name: public
    endpoint: tcp:{port}:interface=127.0.0.1
{extra}
upstreams:
  app: {{targets: [{{url: "http://127.0.0.1:9"}}]}}
routes:
  - {{name: all, path: "/*", upstream: app}}
"""


def _one_clear_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The run failed with a non-zero status, no traceback, and one line saying so, holding every word."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    assert "Usage:" not in out, out
    lines = [line for line in out.splitlines() if "cannot start" in line]
    assert len(lines) == 1, out
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def busy_port() -> "socket.socket":
    """A port something else listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock
    sock.close()


def test_listener_port_in_use(tmp_path: Path, busy_port: socket.socket) -> None:
    port = busy_port.getsockname()[1]
    proc = _twistd(tmp_path, _config(port))
    _one_clear_line(proc, "listener 'public'", str(port), "already in use")


def test_admin_port_in_use(tmp_path: Path, busy_port: socket.socket) -> None:
    port = busy_port.getsockname()[1]
    admin = f"admin: {{endpoint: 'tcp:{port}:interface=127.0.0.1', token: t0k3n}}"
    proc = _twistd(tmp_path, _config(free_port(), admin))
    _one_clear_line(proc, "admin listener", str(port), "already in use")


def test_missing_certificate_file(tmp_path: Path) -> None:
    tls = f"    tls: {{certificate: {tmp_path}/missing.crt, private_key: {tmp_path}/missing.key}}"
    proc = _twistd(tmp_path, _config(free_port()).replace("interface=127.0.0.1\n", "interface=127.0.0.1\n" + tls + "\n", 1))
    line = _one_clear_line(proc, "listeners[0].tls.certificate", "missing.crt", "No such file")
    assert line.startswith("twistgate: cannot start: ")


def _drop_capabilities(*capabilities: str) -> List[str]:
    """As root, run without these capabilities (the test then sees what an unprivileged user sees)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        if os.environ.get("CI"):
            pytest.fail("setpriv (util-linux) is required in CI to drop a capability as root")
        pytest.skip("running as root without setpriv: cannot drop a capability")
    return [setpriv, "--bounding-set=" + ",".join("-" + c for c in capabilities)]


def test_unreadable_private_key(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    key.chmod(0)
    tls = f"    tls: {{certificate: {cert}, private_key: {key}}}"
    config = _config(free_port()).replace("interface=127.0.0.1\n", "interface=127.0.0.1\n" + tls + "\n", 1)
    proc = _twistd(tmp_path, config, prefix=_drop_capabilities("dac_override", "dac_read_search"))
    _one_clear_line(proc, "listeners[0].tls.private_key", "Permission denied")


def test_privileged_port_without_privilege(tmp_path: Path) -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) if Path(
        "/proc/sys/net/ipv4/ip_unprivileged_port_start"
    ).exists() else 1024
    if start <= 1:
        pytest.skip("this host lets anyone bind any port")
    port = min(start - 1, 1023)
    proc = _twistd(tmp_path, _config(port), prefix=_drop_capabilities("net_bind_service"))
    line = _one_clear_line(proc, "listener 'public'", f"port {port}", "permission denied")
    for hint in ("setcap cap_net_bind_service", "systemd socket", "AmbientCapabilities"):
        assert hint in line


def _self_signed(tmp_path: Path) -> "tuple[Path, Path]":
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-subj", "/CN=localhost", "-days", "2"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_port_in_use_with_worker_processes(tmp_path: Path, busy_port: socket.socket) -> None:
    """With workers the supervisor binds the listeners: the same one line."""
    port = busy_port.getsockname()[1]
    proc = _twistd(tmp_path, "workers: 2\n" + _config(port))
    _one_clear_line(proc, "listener 'public'", str(port), "already in use")
