"""The admin API on its own listener, with real sockets; /metrics checked by promtool."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.ops.live import TOKEN, LiveGateway, admin, request, require_tool

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0:interface=127.0.0.1"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: integration-token}
upstreams: {app: {targets: [{url: "http://127.0.0.1:{up}"}]}}
routes:
  - {name: api, path: "/api/*", upstream: app}
"""


class Upstream(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"hello from upstream"


@pytest.fixture
def upstream_port(reactor):
    site = Site(Upstream())
    site.log = lambda request: None
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield port.getHost().port
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.inlineCallbacks
def test_admin_api_is_on_its_own_listener_behind_the_token(reactor, tmp_path, upstream_port):
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", CONFIG, up=upstream_port)
    yield gateway.start()
    try:
        assert gateway.admin_port != gateway.port
        status, _, body = yield deferToThread(request, gateway.port, "POST", "/api/x", body=b"12345")
        assert status == 200 and body == b"hello from upstream"
        status, _, body = yield deferToThread(request, gateway.port, "GET", "/admin/health", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 404  # the public listener knows no admin API
        status, head, body = yield deferToThread(admin, gateway.admin_port, "GET", "/admin/health", None)
        assert status == 401 and head["www-authenticate"].startswith("Bearer")
        status, _, body = yield deferToThread(admin, gateway.admin_port, "GET", "/admin/health")
        assert status == 200 and body["status"] == "ok" and body["open_connections"] >= 0
        status, _, stats = yield deferToThread(admin, gateway.admin_port, "GET", "/admin/stats")
        assert stats["routes"]["api"]["requests"] == 1
        status, _, metrics = yield deferToThread(admin, gateway.admin_port, "GET", "/metrics", None)
        text = metrics.decode()
        assert 'twistgate_requests_total{method="POST",route="api",status_class="2xx"} 1.0' in text
        assert 'twistgate_request_body_bytes_total{route="api"} 5.0' in text
        assert 'twistgate_open_connections{listener="public"}' in text
    finally:
        yield gateway.stop()


@pytest_twisted.inlineCallbacks
def test_metrics_pass_promtool(reactor, tmp_path, upstream_port):
    promtool = require_tool("promtool")
    gateway = LiveGateway(reactor, tmp_path / "gw.yaml", CONFIG, up=upstream_port)
    yield gateway.start()
    try:
        for path in ("/api/a", "/api/b", "/nowhere"):
            yield deferToThread(request, gateway.port, "GET", path)
        _, _, metrics = yield deferToThread(admin, gateway.admin_port, "GET", "/metrics", None)
    finally:
        yield gateway.stop()
    result = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
