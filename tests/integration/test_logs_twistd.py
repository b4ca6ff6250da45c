"""
Issue 14, logs, under the real ``twistd``: the JSON access log on standard
output is bare JSON lines (twistd's ``[stdout#info]`` decoration would
break every log shipper that parses them), standard output can carry
nothing else (``--logger=twistgate.logs.stderr``), and SIGUSR1 makes a file
access log reopen its path after logrotate renamed it, while twistd still
rotates its own ``--logfile``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List

import pytest

from twistgate.testing_twistd import EchoServer, free_port, http_request

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def _config(port: int, upstream: EchoServer, access_log: str) -> str:
    return f"""
listeners: [{{name: p, endpoint: "tcp:{port}:interface=127.0.0.1"}}]
upstreams: {{app: {{targets: [{{url: "{upstream.url}"}}]}}}}
routes: [{{name: all, path: "/*", upstream: app}}]
access_log: {access_log}
"""


def _twistd(tmp_path: Path, config: str, options: List[str], **popen) -> subprocess.Popen:
    path = tmp_path / "gw.yaml"
    path.write_text(config)
    return subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", *options, "twistgate", "--config", str(path)],
        cwd=tmp_path, text=True, **popen,
    )  # fmt: skip


def _until(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"twistd exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _serving(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return http_request(f"http://127.0.0.1:{port}/ready", timeout=1).status == 200
        except OSError:
            return False

    return check


def _stop(proc: subprocess.Popen) -> "tuple[str, str]":
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out or "", err or ""


def test_access_lines_on_stdout_are_bare_json_under_twistd(tmp_path: Path) -> None:
    """The documented ``--logfile=-``: twistd's lines and access lines share stdout, each access line pure JSON."""
    port = free_port()
    with EchoServer() as upstream:
        proc = _twistd(
            tmp_path, _config(port, upstream, '{path: "-", flush_interval: 0s}'), ["--logfile=-"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _until(_serving(port), proc)
        for n in range(3):
            assert http_request(f"http://127.0.0.1:{port}/item/{n}").status == 200
        out, _ = _stop(proc)
    access = [line for line in out.splitlines() if '"request_id"' in line]
    assert len(access) >= 4, out
    for line in access:
        assert line.startswith("{"), line
        json.loads(line)
    assert "[stdout#info]" not in out


@pytest.mark.parametrize("workers", [1, 2])
def test_stdout_carries_only_the_access_log_with_twistds_log_on_stderr(tmp_path: Path, workers: int) -> None:
    """With worker processes, the supervisor writes their access lines to its standard output: bare too."""
    port = free_port()
    with EchoServer() as upstream:
        config = f"workers: {workers}\n" + _config(port, upstream, '{path: "-", flush_interval: 0s}')
        proc = _twistd(
            tmp_path, config, ["--logger=twistgate.logs.stderr"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        _until(_serving(port), proc)
        for n in range(3):
            assert http_request(f"http://127.0.0.1:{port}/item/{n}").status == 200
        out, err = _stop(proc)
    lines = out.splitlines()
    paths = [json.loads(line)["path"] for line in lines]  # every line is one JSON document
    # Each worker passes its lines on by itself: across workers, lines need not keep request order.
    assert sorted(p for p in paths if p.startswith("/item/")) == ["/item/0", "/item/1", "/item/2"], out
    assert "Server Shut Down" in err


def _reopen_lines(own: Path) -> int:
    """How many "reopened" lines the supervisor's log holds, in the file and in the one SIGUSR1 rotated it to."""
    rotated = own.with_name(own.name + ".1")
    return sum(f.read_text().count("reopened") for f in (own, rotated) if f.exists())


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_reopens_the_access_log_file_for_logrotate(tmp_path: Path, workers: int) -> None:
    """With worker processes, the supervisor passes the signal on to every serving worker."""
    port = free_port()
    access, own = tmp_path / "access.log", tmp_path / "twistd.log"
    with EchoServer() as upstream:
        config = f"workers: {workers}\n" + _config(port, upstream, f'{{path: "{access}", flush_interval: 0s}}')
        proc = _twistd(
            tmp_path, config, [f"--logfile={own}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _until(lambda: own.exists() and "twistgate serving" in own.read_text() and _serving(port)(), proc)
            for _ in range(4):  # new connections: with workers, more than one of them answers
                assert http_request(f"http://127.0.0.1:{port}/before").status == 200
            _until(lambda: "/before" in access.read_text(), proc)
            os.rename(access, tmp_path / "access.log.1")  # what logrotate does first
            proc.send_signal(signal.SIGUSR1)  # its postrotate
            _until(access.exists, proc)
            if workers > 1:  # every worker has reopened it (each says so through the supervisor's log,
                # which the same signal rotates: a worker's line may land before or after that)
                _until(lambda: _reopen_lines(own) >= workers, proc)
            for _ in range(4):
                assert http_request(f"http://127.0.0.1:{port}/after").status == 200
            _until(lambda: access.read_text().count("/after") == 4, proc)
        finally:
            _stop(proc)
    old = [json.loads(line)["path"] for line in (tmp_path / "access.log.1").read_text().splitlines()]
    new = [json.loads(line)["path"] for line in access.read_text().splitlines()]
    assert "/before" in old and "/after" not in old
    assert "/after" in new and "/before" not in new
    # twistd's own SIGUSR1 handler (rotating its --logfile) still ran
    assert (tmp_path / "twistd.log.1").exists()
