"""
The chain: a new policy is one module plus one line in `chain.POLICIES`
(its config section, its stage, body filters), the policies run in the
listed order, and services and observers follow the generation's life;
exercised in a whole in-memory gateway.
"""

from __future__ import annotations

from typing import Optional

import attrs
import pytest
from twisted.web.resource import Resource

from twistgate import chain
from twistgate.config import ConfigError, load_text
from twistgate.config._node import Node
from twistgate.config.model import Location
from twistgate.plugins import hookimpl
from twistgate.policies import Policy
from twistgate.testing import GatewayHarness
from tests.policy_helpers import add_policy, reset_sections


@attrs.frozen
class ShoutConfig:
    header: str
    location: Location


class Upstream(Resource):
    isLeaf = True

    def render(self, request):
        request.setHeader(b"Content-Length", b"11")
        seen = request.getHeader(b"X-Shout") or b"-"
        return b"hello " + seen[:5].ljust(5, b".")


class UpperCase:
    """A body filter: upper-cases every chunk (so the length does not change)."""

    def __init__(self):
        self.finished = False

    def write(self, data):
        return data.upper()

    def finish(self):
        self.finished = True
        return b""


class Shout:
    def __init__(self, config, counter):
        self.config = config
        self.counter = counter
        self.filters = []

    @hookimpl
    def on_request(self, request, route):
        self.counter.calls += 1
        request.headers.setRawHeaders(self.config.header, [b"loud!"])

    @hookimpl
    def on_response(self, request, response):
        body_filter = UpperCase()
        self.filters.append(body_filter)
        response.body_filters = (response.body_filters or []) + [body_filter]


class Counter:
    def __init__(self):
        self.calls = 0


@pytest.fixture
def shout_feature(monkeypatch):
    """A `shout:` route section and its stage, as a new policy module would add them."""
    built = {"counter": Counter()}

    def parse(node: Node) -> Optional[ShoutConfig]:
        fields = node.mapping(("header",), required=("header",))
        if fields is None:
            return None
        header = fields.read("header", Node.string, None)
        return ShoutConfig(header=header, location=node.location()) if header else None

    def build(route, services):
        config = route.policies["shout"]
        if not config.header.startswith("X-"):
            raise ConfigError([])
        built.setdefault("stages", []).append(Shout(config, built["counter"]))
        return built["stages"][-1]

    add_policy(monkeypatch, Policy(name="shout", key="shout", parse=parse, build=build), before="auth")
    yield built
    reset_sections()


CONFIG = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes:
  - {name: loud, path: "/loud", upstream: app, shout: {header: X-Shout}}
  - {name: quiet, path: "/quiet", upstream: app}
"""


def test_route_section_builds_a_stage_that_runs_per_route(shout_feature):
    config = load_text(CONFIG)
    assert config.routes[0].policies["shout"].header == "X-Shout"
    assert "shout" not in config.routes[1].policies
    gw = GatewayHarness(config, Upstream())
    response = gw.request("GET", "http://gw/loud")
    assert gw.content(response) == b"HELLO LOUD!"  # header set by the stage, body through the filter
    assert shout_feature["stages"][0].filters[0].finished
    response = gw.request("GET", "http://gw/quiet")
    assert gw.content(response) == b"hello -...."
    assert shout_feature["counter"].calls == 1


def test_unregistered_section_is_refused_by_name():
    with pytest.raises(ConfigError) as error:
        load_text(CONFIG)
    assert "unknown key 'shout'" in str(error.value)


def test_services_start_and_stop_with_the_generation(tmp_path):
    """The access log (a service with a lifetime) starts and stops with the generation."""
    log = tmp_path / "access.log"
    gw = GatewayHarness(load_text(CONFIG.replace("    shout: {header: X-Shout}", "").replace(", shout: {header: X-Shout}", "") + f"access_log: {{path: {log}, flush_interval: 1s}}\n"), Upstream())
    access_log = gw.generation.services.access_log
    assert access_log in gw.generation.services.lifetimes
    gw.generation.start()
    gw.content(gw.request("GET", "http://gw/quiet"))
    assert log.read_text() == ""  # buffered until the flush interval
    gw.clock.advance(1)
    assert len(log.read_text().splitlines()) == 1
    gw.generation.stop()
    gw.content(gw.request("GET", "http://gw/quiet"))
    gw.clock.advance(5)
    assert len(log.read_text().splitlines()) == 1  # stopped: its flusher is gone


def test_observers_get_one_record_per_request(shout_feature):
    gw = GatewayHarness(load_text(CONFIG), Upstream())
    records = []
    gw.generation.observers.append(records.append)
    gw.clock.advance(100)
    gw.content(gw.request("GET", "http://gw/loud?q=1"))
    gw.content(gw.request("GET", "http://gw/missing"))
    assert len(records) == 2
    ok, missing = records
    assert (ok.route, ok.status, ok.method, ok.path) == ("loud", 200, "GET", "/loud")
    assert ok.upstream == "app" and ok.target == "http://app" and ok.attempts == 1
    assert ok.bytes_out == 11 and ok.started == 100 and ok.error is None
    assert (missing.route, missing.status, missing.error) == (None, 404, "route_not_found")


def test_policies_run_in_the_listed_order_and_unwind_in_reverse(monkeypatch):
    """Requests meet the policies in `chain.POLICIES` order; responses the reverse."""
    seen = []

    class Mark:
        def __init__(self, name):
            self.name = name

        @hookimpl
        def on_request(self, request):
            seen.append(("request", self.name))

        @hookimpl
        def on_response(self, request, response):
            seen.append(("response", self.name))

    for name, before in (("first", "compression"), ("second", "auth"), ("third", "json_envelope")):
        add_policy(monkeypatch, Policy(name=name, build=lambda route, services, name=name: Mark(name)), before=before)
    gw = GatewayHarness(load_text(CONFIG.replace(", shout: {header: X-Shout}", "")), Upstream())
    gw.content(gw.request("GET", "http://gw/quiet"))
    assert seen == [("request", "first"), ("request", "second"), ("request", "third"),
                    ("response", "third"), ("response", "second"), ("response", "first")]
    assert [n for n in gw.generation.routes_by_name["quiet"].chain.names if n in ("first", "second", "third")] == ["first", "second", "third"]
    reset_sections()


def test_every_policy_has_a_unique_name_and_key():
    names = [policy.name for policy in chain.POLICIES]
    keys = [policy.key for policy in chain.POLICIES if policy.key is not None]
    assert len(names) == len(set(names)) and len(keys) == len(set(keys))


def test_stage_factory_errors_refuse_the_config(shout_feature):
    config = load_text(CONFIG.replace("X-Shout", "Shout"))
    with pytest.raises(ConfigError):
        GatewayHarness(config, Upstream())
