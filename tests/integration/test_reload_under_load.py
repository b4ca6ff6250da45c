"""
Hot reload with real sockets: reloads under steady concurrent load drop
nothing, a request in flight finishes on its generation, a broken config is
rejected while the old one serves, and SIGHUP reloads a twistd process.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.ops.live import TOKEN, LiveGateway, admin, request
from twistgate.testing_twistd import free_port

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: integration-token}
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: api, path: "/api/*", upstream: app, timeout: 20s}
  - {name: version, path: "/version", upstream: app, add_prefix: /v{n}}
"""


class Upstream(Resource):
    """Echoes the path; /api/slow answers after `delay` seconds."""

    isLeaf = True

    def __init__(self, reactor: Any, delay: float = 1.5) -> None:
        super().__init__()
        self.reactor = reactor
        self.delay = delay

    def render(self, request: Any) -> Any:
        if request.path == b"/api/slow":
            def answer() -> None:
                if not request._disconnected:
                    request.write(b"slow done")
                    request.finish()

            self.reactor.callLater(self.delay, answer)
            return NOT_DONE_YET
        return b"path=" + request.path


@pytest.fixture
def upstream_port(reactor):
    site = Site(Upstream(reactor))
    site.log = lambda request: None
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield port.getHost().port
    pytest_twisted.blockon(port.stopListening())


def hammer(port: int, stop: threading.Event, results: List[Any]) -> None:
    """Keep-alive requests as fast as they come back, until told to stop."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set():
            try:
                conn.request("GET", "/api/item")
                response = conn.getresponse()
                body = response.read()
                results.append((response.status, body))
            except Exception as error:  # any failure is a dropped request
                results.append((0, repr(error)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    finally:
        conn.close()


@pytest_twisted.inlineCallbacks
def test_reloads_under_steady_load_drop_nothing(reactor, tmp_path, upstream_port):
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", CONFIG, up=upstream_port, n=1)
    yield gateway.start()
    stop = threading.Event()
    results: List[Any] = []
    try:
        slow = deferToThread(request, gateway.port, "GET", "/api/slow")
        workers = [deferToThread(hammer, gateway.port, stop, results) for _ in range(4)]
        yield deferLater(reactor, 0.3, lambda: None)
        for n in range(2, 7):
            gateway.write(CONFIG, up=upstream_port, n=n)
            status, _, body = yield deferToThread(admin, gateway.admin_port, "POST", "/admin/reload")
            assert status == 200, body
            assert body["generation"] == n and body["changes"]["upstreams_reused"] == ["app"]
            yield deferLater(reactor, 0.15, lambda: None)
            status, _, answer = yield deferToThread(request, gateway.port, "GET", "/version")
            assert answer == f"path=/v{n}/version".encode()  # the new generation serves
        stop.set()
        yield DeferredList(workers)
        status, _, body = yield slow
        assert (status, body) == (200, b"slow done")  # began on generation 1, finished after 5 reloads
    finally:
        stop.set()
        yield gateway.stop()
    assert len(results) > 50
    failures = [r for r in results if r[0] != 200]
    assert failures == []
    assert all(body == b"path=/api/item" for _, body in results)


@pytest_twisted.inlineCallbacks
def test_broken_config_is_rejected_while_the_old_one_serves(reactor, tmp_path, upstream_port):
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", CONFIG, up=upstream_port, n=1)
    yield gateway.start()
    try:
        gateway.path.write_text(gateway.path.read_text().replace("upstream: app, add_prefix", "upstream: ap, add_prefix"))
        status, _, body = yield deferToThread(admin, gateway.admin_port, "POST", "/admin/reload")
        assert status == 400 and body["error"] == "invalid_config"
        assert body["issues"][0]["path"] == "routes[1].upstream"
        status, _, answer = yield deferToThread(request, gateway.port, "GET", "/version")
        assert (status, answer) == (200, b"path=/v1/version")
        _, _, health = yield deferToThread(admin, gateway.admin_port, "GET", "/admin/health")
        assert health["generation"] == 1
    finally:
        yield gateway.stop()


# -- SIGHUP under twistd ------------------------------------------------------

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]



def _wait(predicate: Any, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"twistd exited early:\n{proc.stdout.read()}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_sighup_reloads_twistd(tmp_path):
    up = free_port()
    public, admin_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(up), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "hello").write_text("version two")
    (tmp_path / "hello").write_text("version one")
    config = tmp_path / "gw.yaml"
    text = (
        f"listeners: [{{name: public, endpoint: 'tcp:{public}:interface=127.0.0.1'}}]\n"
        f"admin: {{endpoint: 'tcp:{admin_port}:interface=127.0.0.1', token: '{TOKEN}'}}\n"
        f"upstreams: {{app: {{targets: [{{url: 'http://127.0.0.1:{up}'}}]}}}}\n"
        "routes: [{name: r, path: /hello, upstream: app}]\n"
    )
    config.write_text(text)
    proc = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile=-", "twistgate", "--config", str(config)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    try:
        _wait(lambda: socket.create_connection(("127.0.0.1", up), timeout=0.2).close() or True, proc)
        _wait(lambda: request(public, "GET", "/hello")[2] == b"version one", proc)
        config.write_text(text.replace("path: /hello, upstream: app}", "path: /hello, upstream: app, add_prefix: /v2}"))
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: admin(admin_port, "GET", "/admin/health")[2]["generation"] == 2, proc)
        assert request(public, "GET", "/hello")[2] == b"version two"
        config.write_text("listeners: [")  # broken: rejected, still serving
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: admin(admin_port, "GET", "/admin/health")[2]["last_reload"]["ok"] is False, proc)
        assert request(public, "GET", "/hello")[2] == b"version two"
        assert proc.poll() is None  # SIGHUP did not kill it
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        upstream.terminate()
        upstream.wait(timeout=10)
    assert "configuration reloaded (SIGHUP): generation 2" in output
    assert "configuration reload rejected (SIGHUP)" in output
