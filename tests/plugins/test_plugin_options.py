"""
Issue 17 item 8: a plugin declares its options (an ``Options`` dataclass or
attrs class on its factory, the mechanism of twistgate.plugins.options the
extension points use); the gateway validates and converts them when it
reads the configuration, with file, line and key path; the built-ins use
the same mechanism; ``twistgate plugins`` lists what is installed with its
options.
"""

from __future__ import annotations

import dataclasses
import json
from typing import List, Literal, Optional

import pytest
from twisted.web.resource import Resource

from twistgate.cli import main
from twistgate.config import ConfigError, load_text
from twistgate.config.model import Rate
from twistgate.plugins import hookimpl, ip_allow, maintenance
from twistgate.plugins.options import DeclaredOptions, Duration, Size, options_spec
from twistgate.plugins.registry import using_plugins
from twistgate.testing import GatewayHarness


@dataclasses.dataclass(frozen=True)
class QuotaOptions:
    daily_limit: int  # required
    window: Duration = 86400.0
    burst: Optional[Rate] = None
    max_body: Size = 1024
    header: str = "X-Tenant"
    mode: Literal["enforce", "report"] = "enforce"
    exempt: List[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.daily_limit < 1:
            raise ValueError("daily_limit must be at least 1")


class Quota:
    Options = QuotaOptions
    built: list = []

    def __init__(self, options, context):
        Quota.built.append(dict(options))

    @hookimpl
    def on_request(self, request):
        return None


def yaml(plugin: str) -> str:
    return f"""
listeners: [{{name: p, endpoint: "tcp:0"}}]
upstreams: {{app: {{targets: [{{url: "http://app:80"}}]}}}}
routes:
  - name: api
    path: "/*"
    upstream: app
    plugins:
      quota: {plugin}
"""


@pytest.fixture(autouse=True)
def fresh():
    Quota.built = []


def test_options_are_converted_when_the_configuration_is_read():
    text = yaml('{daily_limit: "${QUOTA}", window: 1h, burst: 10/s, max_body: 2KiB, exempt: [acme]}')
    with using_plugins({"quota": Quota}):
        config = load_text(text, environ={"QUOTA": "1000"})
    [section] = config.routes[0].plugins
    assert section.options == {
        "daily_limit": 1000, "window": 3600.0, "burst": Rate(count=10, per=1.0), "max_body": 2048,
        "header": "X-Tenant", "mode": "enforce", "exempt": ["acme"],
    }  # fmt: skip
    GatewayHarness(config, Resource(), plugins={"quota": Quota})
    assert Quota.built == [section.options]  # the factory gets them as they are


def test_every_mistake_is_reported_with_file_line_and_key_path():
    text = yaml("\n        daily_limt: 5\n        window: 1x\n        mode: loud")
    with using_plugins({"quota": Quota}), pytest.raises(ConfigError) as raised:
        load_text(text, filename="gw.yaml")
    found = [str(issue) for issue in raised.value.issues]
    assert "gw.yaml:10: routes[0].plugins.quota.daily_limt: unknown key 'daily_limt'; did you mean 'daily_limit'?" in found
    assert any(s.startswith("gw.yaml:11: routes[0].plugins.quota.window: unknown duration unit 'x'") for s in found)
    assert "gw.yaml:12: routes[0].plugins.quota.mode: unknown value 'loud'; expected one of enforce, report" in found


def test_a_validator_error_is_reported_at_the_section():
    with using_plugins({"quota": Quota}), pytest.raises(ConfigError) as raised:
        load_text(yaml("{daily_limit: 0}"), filename="gw.yaml")
    [issue] = raised.value.issues
    assert str(issue) == "gw.yaml:9: routes[0].plugins.quota: invalid options: daily_limit must be at least 1"


def test_a_disabled_section_is_not_read():
    with using_plugins({"quota": Quota}):
        config = load_text(yaml("{enabled: false, daily_limit: lots}"))
    assert config.routes[0].plugins[0].enabled is False


def test_a_factory_given_only_to_the_harness_still_gets_converted_options():
    """Without using_plugins the loader does not know the plugin; building it converts its options (key path in the message)."""
    config = load_text(yaml("{daily_limit: 7, window: 2m}"))
    GatewayHarness(config, Resource(), plugins={"quota": Quota})
    assert Quota.built[0]["window"] == 120.0 and Quota.built[0]["exempt"] == []
    with pytest.raises(ConfigError, match=r"routes\[0\].plugins.quota: plugin 'quota': window: unknown duration unit"):
        GatewayHarness(load_text(yaml("{daily_limit: 7, window: 2x}")), Resource(), plugins={"quota": Quota})


def test_the_builtins_declare_their_options_the_same_way():
    for factory in (ip_allow.make_plugin, maintenance.make_plugin):
        assert isinstance(options_spec(factory), DeclaredOptions)
    # Their mistakes are now found when the file is read (twistgate check), not when the plugin is built.
    with pytest.raises(ConfigError) as raised:
        load_text(yaml("{}").replace("quota: {}", "ip_allow: {deny: [nonsense]}\n      maintenance: {retry_after: 5}"))
    found = " / ".join(str(issue) for issue in raised.value.issues)
    assert "routes[0].plugins.ip_allow: invalid options: deny: 'nonsense' is not an IP address" in found
    assert "routes[0].plugins.maintenance.retry_after: a duration needs a unit: write 5s" in found


def test_twistgate_plugins_lists_what_is_installed_with_its_options(capsys, example_plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_plugin_site))
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "Plugins (twistgate)" in out and "Balancers (twistgate.balancers)" in out
    assert "Discovery (twistgate.discovery)" in out and "Authenticators (twistgate.authenticators)" in out
    assert "  ip_allow  (built in)" in out
    assert "      retry_after (duration or null, default null): sent as Retry-After, in whole seconds" in out
    assert "  example_headers  (entry point twistgate_example_plugin:ExampleHeaders of twistgate-example-plugin" in out
    assert main(["plugins", "--json"]) == 0
    listed = {(e["group"], e["name"]): e for e in json.loads(capsys.readouterr().out)}
    consul = {o["name"]: o for o in listed[("twistgate.discovery", "consul")]["options"]}
    assert consul["url"]["required"] is True and consul["blocking"]["default"] is True
    assert listed[("twistgate.balancers", "round_robin")]["options"] == []
