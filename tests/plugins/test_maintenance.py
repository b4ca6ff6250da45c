"""Tests for the built-in maintenance plugin."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from twistgate.config.model import ConfigError, GatewayConfig, ListenerConfig, PluginSection, RouteConfig
from twistgate.errors import ServiceUnavailable
from twistgate.messages import ProxyRequest
from twistgate.plugins import PluginContext, build_plugins
from twistgate.testing import build_plugin
from twistgate.plugins.maintenance import DEFAULT_MESSAGE, Maintenance, make_plugin

CONTEXT = PluginContext(name="maintenance", clock=Clock(), http_client=None)


def plugin(**options) -> Maintenance:
    return build_plugin(make_plugin, options, name="maintenance")


def request(path: str) -> ProxyRequest:
    return ProxyRequest(method=b"GET", path=path)


def test_answers_503_with_retry_after():
    maintenance = plugin(message="Back soon.", retry_after="2m")
    with pytest.raises(ServiceUnavailable) as raised:
        maintenance.on_request(request("/api/users"))
    error = raised.value
    assert (error.status, error.code, error.message) == (503, "maintenance", "Back soon.")
    assert error.headers == ((b"Retry-After", b"120"),)


def test_defaults():
    with pytest.raises(ServiceUnavailable) as raised:
        plugin().on_request(request("/"))
    assert raised.value.message == DEFAULT_MESSAGE
    assert raised.value.headers == ()


def test_retry_after_rounds_up_to_whole_seconds():
    assert plugin(retry_after="1500ms").headers == (("Retry-After", "2"),)


def test_allow_paths():
    maintenance = plugin(allow_paths=["/health", "/status/*"])
    for path in ("/health", "/status", "/status/", "/status/db/ping"):
        maintenance.on_request(request(path))
    for path in ("/health/x", "/healthz", "/statusx", "/api"):
        with pytest.raises(ServiceUnavailable):
            maintenance.on_request(request(path))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"retry_after": "soon"}, "retry_after: expected a duration like 30s"),
        ({"retry_after": 120}, "retry_after: a duration needs a unit: write 120s"),
        ({"retry_after": "0s"}, "retry_after must be more than 0s"),
        ({"allow_paths": ["health"]}, "must be an exact path"),
        ({"allow_paths": ["/a*"]}, "must be an exact path"),
        ({"allow_paths": "/health"}, "maintenance.allow_paths: expected a list"),
        ({"message": ""}, "message must not be empty"),
        ({"mesage": "x"}, "did you mean 'message'?"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        build_plugin(make_plugin, options, name="maintenance")


def test_enabled_false_globally_with_route_exception():
    """Off globally (not built); a route can switch it on with its own options."""
    routes = (
        RouteConfig(name="api", path="/api/*", upstream="u"),
        RouteConfig(
            name="legacy", path="/legacy/*", upstream="u",
            plugins=(PluginSection(name="maintenance", options={"retry_after": "1h"}),),
        ),
    )
    config = GatewayConfig(
        listeners=(ListenerConfig(name="l", endpoint="tcp:0"),),
        routes=routes,
        plugins=(PluginSection(name="maintenance", enabled=False, options={"message": "never built"}),),
    )
    plugins = build_plugins(config, lambda name: CONTEXT)
    assert plugins.for_route("api").empty
    failures = []
    plugins.for_route("legacy").on_request(request("/legacy/x"), None).addErrback(failures.append)
    [failure] = failures
    assert failure.value.code == "maintenance"
    assert failure.value.headers == ((b"Retry-After", b"3600"),)
