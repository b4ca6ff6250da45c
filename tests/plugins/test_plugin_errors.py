"""
Issue 17 item 6: a plugin answers with the gateway's own error format by
raising one of the errors `twistgate.plugins` exports; the answer is the
same as the gateway's own (JSON body, Cache-Control: no-store, the request
id) and ``on_error`` runs for it.
"""

from __future__ import annotations

import json

import pytest
from twisted.web.resource import Resource

from twistgate.config import load_text
from twistgate.plugins import (
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    RateLimited,
    TooManyRequests,
    hookimpl,
)
from twistgate.testing import GatewayHarness

CONFIG = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes:
  - {name: limited, path: /limited, upstream: app, rate_limit: {rate: 1/min}}
  - {name: api, path: "/*", upstream: app}
plugins:
  refuse: {}
  observer: {}
"""

ERRORS = {
    "/400": BadRequest("X-Tenant is required."),
    "/403": Forbidden(),
    "/404": NotFound("No such tenant."),
    "/429": TooManyRequests("Daily quota exceeded.", headers=[("Retry-After", "3600")]),
    "/451": GatewayError("Not here.", status=451, code="unavailable_for_legal_reasons"),
}


class Upstream(Resource):
    isLeaf = True

    def render(self, request):
        return b"upstream"


class Refuse:
    def __init__(self, options, context):
        pass

    @hookimpl
    def on_request(self, request):
        error = ERRORS.get(request.path)
        if error is not None:
            raise error


class Observer:
    seen: list = []

    def __init__(self, options, context):
        pass

    @hookimpl
    def on_error(self, request, failure):
        Observer.seen.append((request.path, failure.value.status))


@pytest.fixture
def gw():
    Observer.seen = []
    return GatewayHarness(load_text(CONFIG), Upstream(), plugins={"refuse": Refuse, "observer": Observer})


def test_the_errors_are_exported_under_their_names():
    assert TooManyRequests is RateLimited
    assert (BadRequest.status, Forbidden.status, NotFound.status, TooManyRequests.status) == (400, 403, 404, 429)


@pytest.mark.parametrize("path", sorted(ERRORS))
def test_a_plugin_error_is_answered_like_the_gateways_own(gw, path):
    error = ERRORS[path]
    response = gw.request("GET", f"http://gw{path}", headers={"X-Request-Id": "req-17"})
    body = json.loads(gw.content(response))
    assert response.code == error.status
    assert body == {"error": error.code, "message": error.message, "request_id": "req-17"}
    headers = response.headers
    assert headers.getRawHeaders("Content-Type") == ["application/json"]
    assert headers.getRawHeaders("Cache-Control") == ["no-store"]
    assert headers.getRawHeaders("X-Request-Id") == ["req-17"]
    assert Observer.seen == [(path, error.status)]  # on_error ran for it
    if path == "/429":
        assert headers.getRawHeaders("Retry-After") == ["3600"]


def test_a_plugins_429_looks_like_the_rate_limiters(gw):
    """The same status line, body keys, code and headers as the built-in rate limiter's 429."""
    gw.request("GET", "http://gw/limited")
    builtin = gw.request("GET", "http://gw/limited")
    plugin = gw.request("GET", "http://gw/429")
    assert (builtin.code, builtin.phrase) == (plugin.code, plugin.phrase) == (429, b"Too Many Requests")
    mine, theirs = json.loads(gw.content(plugin)), json.loads(gw.content(builtin))
    assert sorted(mine) == sorted(theirs) and mine["error"] == theirs["error"] == "rate_limited"
    for name in ("Content-Type", "Cache-Control", "Retry-After"):
        assert plugin.headers.hasHeader(name) and builtin.headers.hasHeader(name), name
