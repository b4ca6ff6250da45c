"""
Issue 14, health for orchestrators: ``/livez`` and ``/readyz`` on the admin
listener without the token (readyz 503 while starting, draining, and,
opted in, while no route can reach a healthy target), and a listener's
``health_path``: an unauthenticated JSON liveness answer before routing,
never forwarded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource

from tests.ops.helpers import AdminGateway
from twistgate.config import ConfigError, load_text
from twistgate.testing import GatewayHarness

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
admin: {endpoint: "tcp:0:interface=127.0.0.1", token: s3cret}
upstreams:
  app: {targets: [{url: "http://app:80"}, {url: "http://app2:80"}]}
routes:
  - {name: api, path: "/api/*", upstream: app}
  - {name: gone, path: "/old", respond: {status: 410}}
"""


class Upstream(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.paths: list = []

    def render(self, request: Any) -> bytes:
        self.paths.append(request.path)
        return b"hello"


def _started(gateway: AdminGateway) -> AdminGateway:
    gateway.service.startService()
    gateway.clock.advance(0)
    assert gateway.service.ready.called
    return gateway


@pytest.fixture
def gateway(tmp_path):
    return AdminGateway(tmp_path / "gw.yaml", CONFIG, Upstream())


def test_livez_answers_without_a_token(gateway):
    response, body = gateway.admin("GET", "/livez", token=None)
    assert response.code == 200 and body == {"status": "alive"}
    assert response.headers.getRawHeaders(b"cache-control") == [b"no-store"]


def test_probes_refuse_other_methods(gateway):
    response, body = gateway.admin("POST", "/readyz", token=None)
    assert response.code == 405 and body["error"] == "method_not_allowed"
    assert response.headers.getRawHeaders(b"allow") == [b"GET, HEAD"]


def test_readyz_is_503_until_started_then_200_then_503_draining(gateway):
    response, body = gateway.admin("GET", "/readyz", token=None)
    assert (response.code, body) == (503, {"status": "starting"})
    _started(gateway)
    response, body = gateway.admin("GET", "/readyz", token=None)
    assert (response.code, body) == (200, {"status": "ready"})
    gateway.service.stopService()
    response, body = gateway.admin("GET", "/readyz", token=None)
    assert (response.code, body) == (503, {"status": "draining"})
    assert gateway.admin("GET", "/livez", token=None)[0].code == 200  # alive while draining


def test_readyz_is_503_while_a_plugins_on_startup_runs(tmp_path):
    """The admin listener opens first, so an orchestrator hears "starting", not silence."""
    hold: "Deferred[None]" = Deferred()

    class SlowStart:
        def on_startup(self, gateway: Any, config: Any) -> Any:
            return hold

    from twistgate.plugins import hookimpl

    SlowStart.on_startup = hookimpl(SlowStart.on_startup)
    text = CONFIG + "plugins:\n  slow: {}\n"
    gateway = AdminGateway(tmp_path / "gw.yaml", text, Upstream(), plugins={"slow": lambda options, context: SlowStart()})
    gateway.service.startService()
    admin = gateway.service.admin
    assert admin.running  # accepting while the hook runs
    assert not any(svc.running for svc in gateway.service.listeners)
    assert gateway.admin("GET", "/readyz", token=None)[1] == {"status": "starting"}
    hold.callback(None)
    assert gateway.admin("GET", "/readyz", token=None)[1] == {"status": "ready"}
    assert all(svc.running for svc in gateway.service.listeners)


def test_readyz_can_require_a_healthy_target(tmp_path):
    text = CONFIG.replace("token: s3cret}", "token: s3cret, ready_requires_healthy_target: true}")
    gateway = _started(AdminGateway(tmp_path / "gw.yaml", text, Upstream()))
    targets = gateway.service.generation.upstreams["app"].targets
    targets[0].healthy = False
    assert gateway.admin("GET", "/readyz", token=None)[0].code == 200  # one target left
    targets[1].healthy = False
    response, body = gateway.admin("GET", "/readyz", token=None)
    assert response.code == 503
    assert body == {"status": "no_healthy_target"}
    targets[1].healthy = True
    assert gateway.admin("GET", "/readyz", token=None)[0].code == 200


def test_without_the_option_readyz_ignores_target_health(gateway):
    _started(gateway)
    for target in gateway.service.generation.upstreams["app"].targets:
        target.healthy = False
    assert gateway.admin("GET", "/readyz", token=None)[0].code == 200


# -- listeners[].health_path -------------------------------------------------------

HEALTH = """
listeners: [{name: public, endpoint: "tcp:0", health_path: /_gateway/health}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes:
  - {name: all, path: "/*", upstream: app, plugins: {ip_allow: {cidrs: [10.0.0.0/8]}}}
"""


def _front(text: str = HEALTH) -> "tuple[GatewayHarness, Upstream]":
    upstream = Upstream()
    gw = GatewayHarness(load_text(text), upstream, listener="public")
    return gw, upstream


def test_health_path_answers_before_routing_and_policies():
    gw, upstream = _front()
    response = gw.request("GET", "http://gw/_gateway/health")
    assert response.code == 200
    assert json.loads(gw.content(response)) == {"status": "alive"}
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert response.headers.getRawHeaders(b"cache-control") == [b"no-store"]
    assert upstream.paths == []  # never forwarded
    head = gw.request("HEAD", "http://gw/_gateway/health")
    assert head.code == 200 and gw.content(head) == b""
    other = gw.request("GET", "http://gw/_gateway/health/more")
    assert other.code == 403  # any other path is routed as usual (here: behind ip_allow)


def test_health_path_is_per_listener_and_off_by_default():
    gw, upstream = _front(HEALTH.replace(", health_path: /_gateway/health", ""))
    assert gw.request("GET", "http://gw/_gateway/health").code == 403


def test_health_path_refuses_other_methods_and_says_draining():
    gw, _ = _front()
    response = gw.request("POST", "http://gw/_gateway/health")
    assert response.code == 405 and response.headers.getRawHeaders(b"allow") == [b"GET, HEAD"]
    gw.resource.draining = True
    response = gw.request("GET", "http://gw/_gateway/health")
    assert response.code == 503 and json.loads(gw.content(response)) == {"status": "draining"}


@pytest.mark.parametrize("path", ["health", "/a/*", "/a?b=1", "/a/../b", "//x", 7])
def test_health_path_must_be_an_exact_path(path):
    with pytest.raises(ConfigError) as error:
        load_text(HEALTH.replace("/_gateway/health", json.dumps(path)), "gw.yaml")
    assert "listeners[0].health_path" in str(error.value)


def test_the_start_line_counts_in_plain_english(tmp_path):
    """'twistgate serving 1 route', as `check` says '1 listener' (it said '1 routes')."""
    from twisted.logger import capturedLogs, formatEvent

    one = CONFIG.replace('  - {name: gone, path: "/old", respond: {status: 410}}\n', "")
    gateway = AdminGateway(tmp_path / "gw.yaml", one, Upstream())
    with capturedLogs() as events:
        _started(gateway)
    lines = [formatEvent(e) for e in events if "twistgate serving" in e.get("log_format", "")]
    assert len(lines) == 1 and lines[0].startswith("twistgate serving 1 route on tcp:0"), lines
