"""
The request pipeline in memory, deterministic: a `Clock` for time, in-memory
transports on both hops (twistgate.testing.GatewayHarness).
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.web.resource import Resource

from twistgate.config import load_text
from twistgate.messages import Response
from twistgate.plugins import hookimpl
from twistgate.testing import GatewayHarness, result_of

CONFIG = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams:
  app:
    targets: [{url: "http://app.internal:8000"}]
    timeouts: {read: 5s}
routes:
  - {name: users, path: "/users/{id}", upstream: app, strip_prefix: /users, add_prefix: /v1/people}
  - {name: quick, path: "/quick/*", upstream: app, timeout: 1s}
  - {name: all, path: "/*", upstream: app}
"""


class Upstream(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def render(self, request):
        self.seen.append((request.method, request.uri, request.requestHeaders.copy(), request.content.read()))
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"path": request.uri.decode()}).encode()


class NeverAnswers:
    """An IAgent whose requests hang until cancelled (the way a stuck upstream looks)."""

    def __init__(self):
        self.cancelled = 0

    def request(self, method, uri, headers=None, bodyProducer=None):
        def cancel(d):
            self.cancelled += 1

        return Deferred(cancel)


class Failing:
    def __init__(self, error):
        self.error = error

    def request(self, method, uri, headers=None, bodyProducer=None):
        return fail(self.error)


def harness(config=CONFIG, **kwargs):
    return GatewayHarness(load_text(config, "t.yaml"), kwargs.pop("upstreams", Upstream()), **kwargs)


def error_of(gw, response):
    body = json.loads(gw.content(response))
    assert response.headers.getRawHeaders(b"Content-Type") == [b"application/json"]
    assert body["request_id"] == response.headers.getRawHeaders(b"X-Request-Id")[0].decode()
    return body


def test_forwards_with_rewrites_and_sets_target_host():
    upstream = Upstream()
    gw = harness(upstreams=upstream)
    response = gw.request("GET", "http://api.example/users/42?x=1")
    assert response.code == 200
    assert json.loads(gw.content(response)) == {"path": "/v1/people/42?x=1"}
    method, uri, headers, _ = upstream.seen[0]
    assert headers.getRawHeaders(b"Host") == [b"app.internal:8000"]
    assert headers.getRawHeaders(b"X-Forwarded-Host") == [b"api.example"]


def test_read_timeout_is_504_and_cancels_the_upstream_request():
    agent = NeverAnswers()
    gw = harness(agents={"app": agent})
    d = gw.send("GET", "http://api.example/slow")
    gw.clock.advance(4.9)
    gw.flush()
    assert agent.cancelled == 0
    gw.clock.advance(0.2)
    gw.flush()
    response = result_of(d)
    assert response.code == 504
    assert error_of(gw, response)["error"] == "upstream_timeout"
    assert agent.cancelled == 1


def test_route_timeout_caps_the_upstream_read_timeout():
    gw = harness(agents={"app": NeverAnswers()})
    d = gw.send("GET", "http://api.example/quick/x")
    gw.clock.advance(1.0)
    gw.flush()
    assert result_of(d).code == 504


def test_connect_timeout_is_504_and_refused_is_502():
    gw = harness(agents={"app": Failing(ConnectTimeoutError())})
    response = gw.request("GET", "http://api.example/x")
    assert response.code == 504
    gw = harness(agents={"app": Failing(ConnectionRefusedError())})
    response = gw.request("GET", "http://api.example/x")
    assert response.code == 502
    assert error_of(gw, response)["error"] == "bad_gateway"


def test_no_timer_is_left_behind_after_a_response():
    gw = harness()
    gw.request("GET", "http://api.example/x")
    assert gw.clock.getDelayedCalls() == []


class Recorder:
    """A plugin recording which hooks fire, optionally answering or raising."""

    calls: list = []

    def __init__(self, options, context):
        self.options = options
        self.calls = Recorder.calls

    @hookimpl
    def on_request(self, request, route):
        self.calls.append(("on_request", route.name, request.path))
        if self.options.get("answer"):
            return Response.json({"from": "plugin"}, status=202)
        if self.options.get("raise"):
            raise RuntimeError("boom")
        request.headers.setRawHeaders(b"X-Plugin", [b"seen"])
        return None

    @hookimpl
    def on_response(self, request, response):
        self.calls.append(("on_response", response.status))
        response.headers.setRawHeaders(b"X-Plugin-Response", [b"yes"])

    @hookimpl
    def on_error(self, request, failure):
        self.calls.append(("on_error", type(failure.value).__name__))
        if self.options.get("custom_error"):
            return Response(status=418, body=b"custom")
        return None


PLUGGED = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
plugins: {recorder: {}}
routes:
  - {name: plain, path: "/plain/*", upstream: app}
  - {name: answer, path: "/answer", upstream: app, plugins: {recorder: {answer: true}}}
  - {name: broken, path: "/broken", upstream: app, plugins: {recorder: {raise: true}}}
  - {name: custom, path: "/custom", upstream: app, plugins: {recorder: {raise: true, custom_error: true}}}
  - {name: disabled, path: "/off", upstream: app, plugins: {recorder: {enabled: false}}}
"""


def plugged(**kwargs):
    Recorder.calls = []
    return harness(PLUGGED, plugins={"recorder": Recorder}, **kwargs)


def test_plugins_see_request_and_response_exactly_once():
    upstream = Upstream()
    gw = plugged(upstreams=upstream)
    response = gw.request("GET", "http://h/plain/a")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"X-Plugin-Response") == [b"yes"]
    assert upstream.seen[0][2].getRawHeaders(b"X-Plugin") == [b"seen"]
    assert [c[0] for c in Recorder.calls] == ["on_request", "on_response"]


def test_on_request_answer_short_circuits_the_upstream():
    upstream = Upstream()
    gw = plugged(upstreams=upstream)
    response = gw.request("GET", "http://h/answer")
    assert response.code == 202
    assert json.loads(gw.content(response)) == {"from": "plugin"}
    assert upstream.seen == []
    assert [c[0] for c in Recorder.calls] == ["on_request", "on_response"]


def test_raising_plugin_is_a_500_for_that_request_only():
    gw = plugged()
    response = gw.request("GET", "http://h/broken")
    assert response.code == 500
    body = error_of(gw, response)
    assert body["error"] == "plugin_error"
    assert "boom" not in json.dumps(body)
    assert [c[0] for c in Recorder.calls] == ["on_request", "on_error"]
    assert gw.request("GET", "http://h/plain/x").code == 200


def test_on_error_can_answer_instead_of_the_default():
    gw = plugged()
    response = gw.request("GET", "http://h/custom")
    assert response.code == 418
    assert gw.content(response) == b"custom"


def test_unrouted_request_goes_to_global_on_error():
    gw = plugged()
    response = gw.request("GET", "http://h/nowhere")
    assert response.code == 404
    assert Recorder.calls == [("on_error", "RouteNotFound")]


def test_route_can_disable_a_global_plugin():
    gw = plugged()
    assert gw.request("GET", "http://h/off").code == 200
    assert Recorder.calls == []


def test_upstream_failure_reaches_on_error_as_a_gateway_error():
    gw = plugged(agents={"app": Failing(ConnectionRefusedError())})
    response = gw.request("GET", "http://h/plain/x")
    assert response.code == 502
    assert Recorder.calls[-1] == ("on_error", "UpstreamUnavailable")


def test_ip_allow_and_maintenance_builtins():
    config = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes:
  - {name: internal, path: "/internal", upstream: app, plugins: {ip_allow: {cidrs: [10.0.0.0/8]}}}
  - {name: down, path: "/down/*", upstream: app, plugins: {maintenance: {retry_after: 2m, allow_paths: [/down/status]}}}
"""
    gw = harness(config)
    response = gw.request("GET", "http://h/internal")  # StubTreq's client is 127.0.0.1
    assert response.code == 403 and error_of(gw, response)["error"] == "forbidden"
    response = gw.request("GET", "http://h/down/x")
    assert response.code == 503
    assert response.headers.getRawHeaders(b"Retry-After") == [b"120"]
    assert gw.request("GET", "http://h/down/status").code == 200
