"""Resilience inside a whole in-memory gateway: route overrides, error bodies, records."""

from __future__ import annotations

import json

from twisted.web.resource import Resource

from twistgate.config import load_text
from twistgate.testing import GatewayHarness, result_of

from tests.upstream.fakes import ScriptedAgent


class Echo(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def render(self, request):
        self.seen.append((request.method, request.getHeader(b"Host"), request.content.read()))
        return b"ok"


def gateway(upstream_yaml, routes_yaml, *, agents=None, resource=None):
    text = (
        'listeners: [{name: p, endpoint: "tcp:0"}]\n'
        f"upstreams:\n  app:\n{upstream_yaml}"
        f"routes:\n{routes_yaml}"
    )
    return GatewayHarness(load_text(text), resource or Echo(), agents=agents)


UP = "    targets: [{url: 'http://a:80'}, {url: 'http://b:80'}]\n    retry: {attempts: 2, backoff: 10ms}\n"


def test_route_opt_in_lets_a_post_be_retried():
    """POST after a reset: retried only on the route that opted in; never twice otherwise."""
    agent = ScriptedAgent()
    gw = gateway(
        UP,
        "  - {name: safe, path: /safe, upstream: app, retry: {non_idempotent: true}}\n"
        "  - {name: plain, path: /plain, upstream: app}\n",
        agents={"app": agent},
    )
    d = gw.send("POST", "http://gw/safe", data=b"x")
    agent.sent[-1].reset()
    gw.clock.advance(1)
    agent.sent[-1].answer(200)
    gw.flush()
    assert result_of(d).code == 200 and len(agent.sent) == 2
    d = gw.send("POST", "http://gw/plain", data=b"x")
    agent.sent[-1].reset()
    gw.clock.advance(1)
    gw.flush()
    assert result_of(d).code == 502 and len(agent.sent) == 3


def test_breaker_answers_503_json_with_retry_after():
    agent = ScriptedAgent(auto={b"a": "refuse"})
    records = []
    gw = gateway(
        "    targets: [{url: 'http://a:80'}]\n    circuit_breaker: {failure_threshold: 2, recovery_timeout: 20s}\n",
        "  - {name: r, path: /, upstream: app}\n",
        agents={"app": agent},
    )
    gw.generation.observers.append(records.append)
    for _ in range(2):
        assert gw.request("GET", "http://gw/").code == 502
    response = gw.request("GET", "http://gw/")
    assert response.code == 503
    assert response.headers.getRawHeaders(b"Retry-After") == [b"20"]
    body = json.loads(gw.content(response))
    assert body["error"] == "circuit_open" and body["request_id"]
    assert len(agent.sent) == 2
    assert [(r.status, r.error, r.attempts) for r in records] == [(502, "bad_gateway", 1), (502, "bad_gateway", 1), (503, "circuit_open", 0)]


def test_records_count_attempts_for_retries():
    agent = ScriptedAgent(auto={b"a": "refuse", b"b": 200})
    records = []
    gw = gateway(UP, "  - {name: r, path: /, upstream: app}\n", agents={"app": agent})
    gw.generation.observers.append(records.append)
    d = gw.send("GET", "http://gw/")
    gw.clock.advance(1)
    gw.flush()
    assert result_of(d).code == 200
    assert records[0].attempts == 2 and records[0].target == "http://b"


def test_route_timeouts_override_the_upstreams():
    agent = ScriptedAgent()  # never answers
    gw = gateway(
        "    targets: [{url: 'http://a:80'}]\n    timeouts: {read: 30s}\n",
        "  - {name: quick, path: /quick, upstream: app, timeouts: {read: 1s}}\n  - {name: slow, path: /slow, upstream: app}\n",
        agents={"app": agent},
    )
    quick = gw.send("GET", "http://gw/quick")
    slow = gw.send("GET", "http://gw/slow")
    gw.clock.advance(1)
    gw.flush()
    assert result_of(quick).code == 504
    assert agent.sent[0].cancelled and not agent.sent[1].cancelled
    gw.clock.advance(29)
    gw.flush()
    assert result_of(slow).code == 504


def test_host_header_and_body_reach_a_healthy_target_after_a_retry():
    class Flaky(Echo):
        def render(self, request):
            if request.getHeader(b"Host") == b"a":
                request.setResponseCode(503)
                return b"busy"
            return super().render(request)

    resource = Flaky()
    gw = gateway(
        "    targets: [{url: 'http://a:80'}, {url: 'http://b:80'}]\n    retry: {attempts: 2, backoff: 10ms, on: [503]}\n",
        "  - {name: r, path: /, upstream: app}\n",
        resource=resource,
    )
    d = gw.send("PUT", "http://gw/", data=b"payload")
    gw.clock.advance(1)
    gw.flush()
    response = result_of(d)
    assert response.code == 200 and gw.content(response) == b"ok"
    assert resource.seen == [(b"PUT", b"b", b"payload")]
