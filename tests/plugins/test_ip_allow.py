"""Tests for the built-in ip_allow plugin."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from twistgate.config.model import ConfigError, GatewayConfig, ListenerConfig, Location, PluginSection, RouteConfig
from twistgate.errors import Forbidden
from twistgate.messages import ProxyRequest
from twistgate.plugins import PluginContext, PluginError, build_plugins
from twistgate.testing import build_plugin
from twistgate.plugins.ip_allow import IPAllow, make_plugin

CONTEXT = PluginContext(name="ip_allow", clock=Clock(), http_client=None)


def plugin(**options) -> IPAllow:
    return build_plugin(make_plugin, options, name="ip_allow")


def request(client_ip: str) -> ProxyRequest:
    return ProxyRequest(method=b"GET", path="/", client_ip=client_ip)


def test_allow_list():
    ip_allow = plugin(cidrs=["10.0.0.0/8", "192.168.1.7"])
    ip_allow.on_request(request("10.1.2.3"))
    ip_allow.on_request(request("192.168.1.7"))
    with pytest.raises(Forbidden) as raised:
        ip_allow.on_request(request("192.168.1.8"))
    assert raised.value.status == 403
    assert raised.value.message == "client address not allowed"


def test_allow_alias():
    assert plugin(allow=["10.0.0.0/8"]).permits("10.0.0.1")
    with pytest.raises(ValueError, match="either cidrs or allow"):
        plugin(allow=["10.0.0.0/8"], cidrs=["10.0.0.0/8"])


def test_deny_wins_over_allow():
    ip_allow = plugin(cidrs=["10.0.0.0/8"], deny=["10.6.6.0/24"])
    assert ip_allow.permits("10.1.1.1")
    assert not ip_allow.permits("10.6.6.6")
    assert not ip_allow.permits("11.0.0.1")


def test_deny_only_allows_the_rest():
    ip_allow = plugin(deny=["203.0.113.0/24", "2001:db8:bad::/48"])
    assert ip_allow.permits("198.51.100.1")
    assert ip_allow.permits("2001:db8::1")
    assert not ip_allow.permits("203.0.113.9")
    assert not ip_allow.permits("2001:db8:bad::1")


def test_ipv6():
    ip_allow = plugin(cidrs=["2001:db8::/32", "::1", "10.0.0.0/8"])
    assert ip_allow.permits("2001:db8:0:1::5")
    assert ip_allow.permits("::1")
    assert not ip_allow.permits("2001:db9::1")
    # IPv4-mapped IPv6 is checked as IPv4
    assert ip_allow.permits("::ffff:10.0.0.1")
    assert not ip_allow.permits("::ffff:11.0.0.1")


def test_garbage_client_ip_is_denied():
    ip_allow = plugin(deny=["10.0.0.0/8"])
    for garbage in ("", "unknown", "10.0.0", "1.2.3.4:80", "::g"):
        with pytest.raises(Forbidden):
            ip_allow.on_request(request(garbage))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cidrs": ["10.0.0.1/8"]}, "host bits set; did you mean '10.0.0.0/8'"),
        ({"cidrs": ["10.0.0.0/33"]}, "not an IP address or CIDR network"),
        ({"deny": ["example.com"]}, "deny: 'example.com' is not an IP address"),
        ({"cidrs": "10.0.0.0/8"}, "ip_allow.cidrs: expected a list"),
        ({"cidrs": [10]}, r"ip_allow.cidrs\[0\]: expected a string"),
        ({"alow": ["10.0.0.0/8"]}, "unknown key 'alow'; did you mean 'allow'?"),
        ({}, "use enabled: false"),
        ({"cidrs": []}, "needs cidrs"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        build_plugin(make_plugin, options, name="ip_allow")


def test_through_build_plugins():
    """Configured per route, the plugin answers 403 through the hook machinery."""
    route = RouteConfig(
        name="internal",
        path="/internal/*",
        upstream="backend",
        plugins=(PluginSection(name="ip_allow", options={"cidrs": ["10.0.0.0/8"]}),),
    )
    config = GatewayConfig(listeners=(ListenerConfig(name="l", endpoint="tcp:0"),), routes=(route,))
    plugins = build_plugins(config, lambda name: CONTEXT).for_route("internal")
    results = []
    plugins.on_request(request("10.0.0.1"), None).addBoth(results.append)
    plugins.on_request(request("8.8.8.8"), None).addBoth(results.append)
    assert results[0] is None
    assert results[1].check(Forbidden) and not results[1].check(PluginError)


def test_bad_cidr_location():
    location = Location(file="gw.yaml", line=40, path="routes[3].plugins.ip_allow")
    route = RouteConfig(
        name="r", path="/", upstream="u",
        plugins=(PluginSection(name="ip_allow", options={"deny": ["nonsense"]}, location=location),),
    )
    config = GatewayConfig(listeners=(ListenerConfig(name="l", endpoint="tcp:0"),), routes=(route,))
    with pytest.raises(ConfigError) as raised:
        build_plugins(config, lambda name: CONTEXT)
    [issue] = raised.value.issues
    assert issue.location == location
    assert str(issue).startswith("gw.yaml:40: routes[3].plugins.ip_allow: plugin 'ip_allow': invalid options: deny: 'nonsense'")
