"""
The dashboard in a real headless browser (Debian's chromium): loaded from the
admin listener of a running gateway with traffic, it shows live figures and
refreshes them.  With CI set, a missing chromium is a failure.
"""

from __future__ import annotations

import re
import subprocess
import threading
from typing import Any, List

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.ops.live import TOKEN, LiveGateway, request, require_tool

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: integration-token}
upstreams: {app: {targets: [{url: "http://127.0.0.1:{up}", weight: 2}]}}
routes:
  - {name: catalogue, path: "/catalogue/*", upstream: app}
"""

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


class Upstream(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        if request.path.endswith(b"/missing"):
            request.setResponseCode(404)
        return b"item"


def traffic(port: int, stop: threading.Event) -> int:
    count = 0
    while not stop.is_set():
        request(port, "GET", "/catalogue/missing" if count % 5 == 4 else "/catalogue/item")
        count += 1
        stop.wait(0.02)
    return count


def browse(chromium: str, url: str, profile: str) -> str:
    result = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=6000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest_twisted.inlineCallbacks
def test_dashboard_shows_live_figures(reactor, tmp_path):
    chromium = require_tool("chromium")
    site = Site(Upstream())
    site.log = lambda request: None
    upstream = reactor.listenTCP(0, site, interface="127.0.0.1")
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", CONFIG, up=upstream.getHost().port)
    yield gateway.start()
    stop = threading.Event()
    try:
        load = deferToThread(traffic, gateway.port, stop)
        url = f"http://127.0.0.1:{gateway.admin_port}/admin/#token={TOKEN}&interval=1000"
        dom = yield deferToThread(browse, chromium, url, str(tmp_path / "profile"))
        refused = yield deferToThread(browse, chromium, f"http://127.0.0.1:{gateway.admin_port}/admin/#token=wrong", str(tmp_path / "profile2"))
        stop.set()
        sent = yield load
    finally:
        stop.set()
        yield gateway.stop()
        yield upstream.stopListening()
    assert sent > 10
    refreshes = int(re.search(r'id="refreshes" data-count="(\d+)"', dom).group(1))
    assert refreshes >= 2  # it polls: several live updates within the time budget
    row = re.search(r'<tr data-route="catalogue" data-requests="(\d+)">(.*?)</tr>', dom)
    assert row and int(row.group(1)) > 0
    assert re.search(r'id="status-2xx" data-count="[1-9]\d*"', dom)
    assert re.search(r'id="status-4xx" data-count="[1-9]\d*"', dom)
    assert re.search(r'id="rate" class="big">\d+\.\d\d<', dom)
    assert re.search(r'id="p95">\d+\.\d<', dom)
    assert 'data-target="http://127.0.0.1:' in dom and '<td class="healthy">healthy</td>' in dom
    assert re.search(r'id="generation">1<', dom)
    assert '<span id="status" class="badge ok">ok</span>' in dom
    assert TOKEN not in dom  # the fragment was cleared from the address
    # a wrong token gets the login form back, not data
    assert 'id="login-error" class="error">That token was refused.<' in refused
