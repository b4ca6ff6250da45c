"""
Issue 17 item 11: twistgate's pytest plugin (entry point ``pytest11``) and
the harness under it: a gateway from a YAML string with the plugin under
test, its lifecycle really run, requests in memory, the clock advanced, a
reload; `GatewayHarness.start()` starts the gateway.  The twistd fixture:
tests/integration/test_pytest_plugin_twistd.py.
"""

from __future__ import annotations

import warnings

import pytest

from twistgate.plugins import PluginStartupError, Response, hookimpl
from twistgate.testing import GatewayHarness, result_of

LIFECYCLE = '''
from twistgate.plugins import hookimpl

EVENTS = []

class Recorder:
    def __init__(self, options, context):
        self.name = options.get("name", "global")

    @hookimpl
    def on_startup(self, gateway, config):
        EVENTS.append(("start", self.name))

    @hookimpl
    def on_shutdown(self):
        EVENTS.append(("stop", self.name))

YAML = """
routes:
  - {name: a, path: "/*", upstream: app, plugins: {recorder: {name: route}}}
plugins:
  recorder: {}
"""

def test_one(make_gateway):
    gw = make_gateway(YAML, plugins={"recorder": Recorder})
    assert EVENTS == [("start", "global"), ("start", "route")]
    assert gw.get("/x").code == 200

def test_two_sees_the_shutdown_of_one():
    assert EVENTS == [("start", "global"), ("start", "route"), ("stop", "route"), ("stop", "global")]
'''


def test_the_plugin_is_registered_through_its_entry_point():
    from twistgate.plugins.references import entry_points

    [entry] = [e for e in entry_points("pytest11") if e.name == "twistgate"]
    assert entry.value == "twistgate.pytest_plugin"


def test_make_gateway_runs_on_startup_and_on_shutdown(pytester):
    pytester.makepyfile(LIFECYCLE)
    result = pytester.runpytest_inprocess("-p", "no:twisted")  # pytest-twisted cannot nest in-process
    result.assert_outcomes(passed=2)


class Counter:
    def __init__(self, options, context):
        self.store, self.clock = context.store, context.clock
        self.started = False

    @hookimpl
    def on_startup(self):
        self.started = True

    @hookimpl
    async def on_request(self, request):
        day = int(self.clock.seconds() // 86400)
        count = await self.store.incr(f"day-{day}", ttl=86400)
        request.headers.setRawHeaders("X-Count", [str(count)])
        request.headers.setRawHeaders("X-Started", [str(self.started)])


YAML = """
routes: [{name: api, path: "/*", upstream: app}]
plugins: {counter: {}}
"""


def test_the_harness_from_yaml_start_advance_reload(make_gateway):
    gw = make_gateway(YAML, plugins={"counter": Counter})

    def seen(path):
        return gw.json(gw.get(path))["headers"]

    assert seen("/a")["X-Count"] == ["1"] and seen("/a")["X-Started"] == ["True"]
    assert gw.upstream.requests[-1]["path"] == "/a"  # the echo upstream records what it got
    gw.reload(YAML.replace("name: api", "name: renamed"))  # new instances; the count is in the store
    assert seen("/a")["X-Count"] == ["3"]
    gw.advance(86400)
    assert seen("/a")["X-Count"] == ["1"]  # a new day: a new key


def test_start_starts_the_gateway_and_the_old_meaning_is_deprecated():
    gw = GatewayHarness.from_yaml(YAML, plugins={"counter": Counter})
    assert gw.get("/x").code == 200 and not gw.started
    assert result_of(gw.start()) is gw and gw.started
    with pytest.warns(DeprecationWarning, match="use send"):
        d = gw.start("GET", "/x")
    assert result_of(d).code == 200
    result_of(gw.stop())


def test_a_failing_on_startup_fails_start():
    class Broken:
        def __init__(self, options, context):
            pass

        @hookimpl
        def on_startup(self):
            raise OSError("no database")

    gw = GatewayHarness.from_yaml(YAML.replace("counter", "broken"), plugins={"broken": Broken})
    with pytest.raises(PluginStartupError, match="plugin 'broken' failed to start: OSError: no database"):
        result_of(gw.start())


def test_yaml_errors_point_at_the_tests_own_lines():
    from twistgate.config import ConfigError

    class Declared:
        import dataclasses

        @dataclasses.dataclass(frozen=True)
        class Options:
            limit: int

        def __init__(self, options, context):
            pass

    with pytest.raises(ConfigError, match=r"gateway.yaml:3: plugins.declared.limt: unknown key 'limt'"):
        GatewayHarness.from_yaml("routes: [{name: a, path: /, upstream: app}]\nplugins:\n  declared: {limt: 5}\n",
                                 plugins={"declared": Declared})  # fmt: skip
