"""
The example third-party plugin (examples/twistgate-example-plugin), installed
for real (into a temporary directory: the suite never installs into its own
environment) and found through the ``twistgate`` entry point group.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

import pytest
from twisted.internet.task import Clock

from twistgate.config.model import ConfigError, GatewayConfig, ListenerConfig, PluginSection, RouteConfig
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.plugins import PluginContext, PluginRegistry, build_plugins
from twistgate.testing import result_of


@pytest.fixture
def example_plugin_installed(example_plugin_site, monkeypatch) -> None:
    """The example, installed in a temporary directory, on sys.path for this test only."""
    monkeypatch.syspath_prepend(str(example_plugin_site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("twistgate_example_plugin", None)



def context_factory(name: str) -> PluginContext:
    return PluginContext(name=name, clock=Clock(), http_client=None)


def config(options: dict) -> GatewayConfig:
    return GatewayConfig(
        listeners=(ListenerConfig(name="l", endpoint="tcp:0"),),
        routes=(RouteConfig(name="r", path="/*", upstream="u"),),
        plugins=(PluginSection(name="example_headers", options=options),),
    )


def test_discovered_through_the_entry_point(example_plugin_installed):
    found = importlib.metadata.entry_points()
    # Python 3.9 (Debian's PyPy) has no group= keyword nor select().
    entry_points = found.select(group="twistgate") if hasattr(found, "select") else found.get("twistgate", [])
    assert "example_headers" in {ep.name for ep in entry_points}
    assert "example_headers" in PluginRegistry.default().names()


def test_works_through_build_plugins(example_plugin_installed):
    plugins = build_plugins(
        config({"response_headers": {"X-Served-By": "twistgate"}, "block_paths": ["/admin"]}),
        context_factory,
    ).for_route("r")
    assert plugins.names == ("example_headers",)

    blocked = result_of(plugins.on_request(ProxyRequest(method=b"GET", path="/admin"), None))
    assert blocked.status == 403 and blocked.body == b'{"blocked": "/admin"}'
    assert result_of(plugins.on_request(ProxyRequest(method=b"GET", path="/admin/x"), None)) is None

    response = result_of(plugins.on_response(ProxyRequest(method=b"GET", path="/"), ProxyResponse(status=200)))
    assert response.headers.getRawHeaders(b"X-Served-By") == [b"twistgate"]


def test_bad_options_are_config_errors(example_plugin_installed):
    with pytest.raises(ConfigError, match="plugin 'example_headers': response_headers must be a mapping"):
        build_plugins(config({"response_headers": ["X-A: b"]}), context_factory)
