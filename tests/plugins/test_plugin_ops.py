"""
Issue 17 items 9 and 10: a plugin's metrics on the gateway's /metrics
(promtool-clean, kept across reloads), its read-only admin page under
/admin/plugins/NAME/ behind the admin token, and its logger's fields.
"""

from __future__ import annotations

import subprocess

import pytest
from twisted.logger import capturedLogs, formatEvent
from twisted.web.resource import Resource

from tests.ops.helpers import AdminGateway
from tests.ops.live import require_tool
from twistgate.config import ConfigError
from twistgate.plugins import GatewayError, Response, hookimpl
from twistgate.testing import result_of


class Upstream(Resource):
    isLeaf = True

    def render(self, request):
        return b"ok"


class Tally:
    """Counts requests by route in a metric and in its store; shows the store on its admin page."""

    def __init__(self, options, context):
        self.store, self.log = context.store, context.log
        self.seen = context.metrics.counter("requests", "Requests the plugin saw.", ["route"])
        self.latency = context.metrics.histogram("check_seconds", "Time spent checking.", ["route"])
        self.label = options.get("label", "global")

    @hookimpl
    def on_request(self, request, route):
        self.seen.labels(route=route.name).inc()
        self.latency.labels(route=request.route.name).observe(0.002)
        self.store.incr(route.name)
        self.log.info("tallied {path}", path=request.path, request=request)

    @hookimpl
    async def admin_get(self, path, query):
        if path == "boom":
            raise RuntimeError("secret detail")
        if path == "teapot":
            raise GatewayError("Short and stout.", status=418, code="teapot")
        if path == "raw":
            return Response(status=202, headers={"Content-Type": "text/plain"}, body=b"raw answer")
        if path:
            count = await self.store.get(path)
            return None if count is None else {"route": path, "count": count}
        return {"instance": self.label, "query": query}


CONFIG = """
listeners: [{name: p, endpoint: "tcp:0"}]
admin: {endpoint: "tcp:0", token: s3cret}
upstreams: {app: {targets: [{url: "http://app:80"}]}}
plugins:
  tally: {}
routes:
  - {name: api, path: "/api/*", upstream: app}
  - {name: own, path: "/own/*", upstream: app, plugins: {tally: {label: own}}}
"""


@pytest.fixture
def gw(tmp_path):
    return AdminGateway(tmp_path / "gw.yaml", CONFIG, Upstream(), plugins={"tally": Tally})


def metrics_text(gw) -> str:
    response, body = gw.admin("GET", "/metrics", token=None)
    assert response.code == 200
    return body.decode()


def test_plugin_metrics_are_on_the_gateways_metrics_and_survive_a_reload(gw):
    for path in ("/api/a", "/api/b", "/own/c"):
        assert gw.gw.request("GET", "http://gw" + path).code == 200
    text = metrics_text(gw)
    assert 'twistgate_plugin_tally_requests_total{route="api"} 2.0' in text
    assert 'twistgate_plugin_tally_requests_total{route="own"} 1.0' in text
    assert 'twistgate_plugin_tally_check_seconds_count{route="api"} 2.0' in text
    assert 'twistgate_requests_total{method="GET",route="api",status_class="2xx"} 2.0' in text  # the same route labels
    assert result_of(gw.service.reload())["ok"]  # the factory asks for its metrics again: the same ones
    gw.gw.request("GET", "http://gw/api/d")
    assert 'twistgate_plugin_tally_requests_total{route="api"} 3.0' in metrics_text(gw)


def test_plugin_metrics_pass_promtool(gw):
    promtool = require_tool("promtool")
    gw.gw.request("GET", "http://gw/api/a")
    result = subprocess.run([promtool, "check", "metrics"], input=metrics_text(gw).encode(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_a_metric_cannot_change_shape_on_reload(tmp_path):
    class Changing:
        labels = (["route"], ["route", "tenant"])

        def __init__(self, options, context):
            context.metrics.counter("hits", "Hits.", Changing.labels[options.get("v", 0)])

    gw = AdminGateway(tmp_path / "gw.yaml", CONFIG.replace("tally: {}", "changing: {}").replace("tally: {label: own}", "changing: {}"),
                      Upstream(), plugins={"changing": Changing})  # fmt: skip
    gw.rewrite(CONFIG.replace("tally: {}", "changing: {v: 1}").replace("tally: {label: own}", "changing: {v: 1}"))
    outcome = result_of(gw.service.reload())
    assert not outcome["ok"]
    assert "already exists as a counter with labels ['route']" in outcome["issues"][0]["message"]
    with pytest.raises(ValueError, match="needs a description"):
        from twistgate.plugins.metrics import PluginMetrics

        PluginMetrics("x").counter("hits", "")


def test_the_admin_page_of_a_plugin(gw):
    gw.gw.request("GET", "http://gw/api/a")
    gw.gw.request("GET", "http://gw/own/b")
    response, body = gw.admin("GET", "/admin/plugins/")
    assert response.code == 200
    assert body["plugins"] == [{"name": "tally", "instances": [{"route": None}, {"route": "own"}], "admin": True}]
    assert gw.admin("GET", "/admin/plugins/tally/?v=1")[1] == {"instance": "global", "query": {"v": ["1"]}}
    assert gw.admin("GET", "/admin/plugins/tally/?route=own")[1]["instance"] == "own"
    assert gw.admin("GET", "/admin/plugins/tally/api")[1] == {"route": "api", "count": 1}  # state from the store
    response, body = gw.admin("GET", "/admin/plugins/tally/raw")
    assert (response.code, body) == (202, b"raw answer")


def test_the_admin_page_refuses_what_it_should(gw):
    assert gw.admin("GET", "/admin/plugins/tally/", token=None)[0].code == 401
    assert gw.admin("GET", "/admin/plugins/tally/", token="wrong")[0].code == 401
    response, _ = gw.admin("POST", "/admin/plugins/tally/")
    assert response.code == 405 and response.headers.getRawHeaders("Allow") == ["GET, HEAD"]
    assert gw.admin("GET", "/admin/plugins/nope/")[0].code == 404
    response, body = gw.admin("GET", "/admin/plugins/tally/unknown-route")
    assert response.code == 404 and body["error"] == "not_found"
    response, body = gw.admin("GET", "/admin/plugins/tally/teapot")
    assert (response.code, body["error"]) == (418, "teapot")
    with capturedLogs() as events:
        response, body = gw.admin("GET", "/admin/plugins/tally/boom")
    assert response.code == 500 and "secret" not in str(body)
    [event] = [e for e in events if "log_failure" in e]
    assert (event["plugin"], event["hook"]) == ("tally", "admin_get")


def test_the_plugin_logger_adds_plugin_route_and_request_id(gw):
    with capturedLogs() as events:
        gw.gw.request("GET", "http://gw/own/x", headers={"X-Request-Id": "req-10"})
    [event] = [e for e in events if e.get("log_namespace") == "twistgate.plugins.tally"]
    assert (event["plugin"], event["route"], event["request_id"], event["path"]) == ("tally", "own", "req-10", "/own/x")
    assert formatEvent(event) == "tallied /own/x (route 'own', request req-10)"


def test_a_bad_metric_is_a_configuration_error(tmp_path):
    class Bad:
        def __init__(self, options, context):
            context.metrics.counter("bad-name", "Nope.")

    with pytest.raises(ConfigError, match=r"plugin 'bad': metric name 'bad-name'"):
        AdminGateway(tmp_path / "gw.yaml", CONFIG.replace("tally", "bad"), Upstream(), plugins={"bad": Bad})
