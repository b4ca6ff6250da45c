"""
The extension seams features build on: config sections, services, per-route
stages, body filters and exchange observers, exercised in a whole in-memory
gateway.
"""

from __future__ import annotations

from typing import Optional

import attrs
import pytest
from twisted.web.resource import Resource

from twistgate.config import ConfigError, extensions, load_text
from twistgate.config._node import Node
from twistgate.config.model import Location
from twistgate.plugins import hookimpl
from twistgate.stages import SERVICES, STAGES, service, stage
from twistgate.testing import GatewayHarness


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
        self.started = self.stopped = False
        self.records = []

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True


@pytest.fixture
def shout_feature():
    """Register a `shout:` route section, its stage and a service, then restore the registries."""
    tables = (extensions.ROUTE_SECTIONS, extensions.GATEWAY_SECTIONS, STAGES, SERVICES)
    snapshots = [dict(table) for table in tables]
    built = {}

    @extensions.route_section("shout")
    def parse(node: Node) -> Optional[ShoutConfig]:
        fields = node.mapping(("header",), required=("header",))
        if fields is None:
            return None
        header = fields.read("header", Node.string, None)
        return ShoutConfig(header=header, location=node.location()) if header else None

    @extensions.gateway_section("counter")
    def parse_counter(node: Node) -> object:
        node.mapping(())
        return object()

    @service("counter", always=True)
    def make_counter(section, context):
        counter = Counter()
        context.observers.append(counter.records.append)
        built["counter"] = counter
        return counter

    @stage("shout", order=50)
    def make_shout(config, route, context):
        if not config.header.startswith("X-"):
            raise ConfigError([])
        built.setdefault("stages", []).append(Shout(config, context.services["counter"]))
        return built["stages"][-1]

    yield built
    for table, snapshot in zip(tables, snapshots):
        table.clear()
        table.update(snapshot)


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


def test_services_start_and_stop_with_the_generation(shout_feature):
    gw = GatewayHarness(load_text(CONFIG), Upstream())
    counter = shout_feature["counter"]
    assert not counter.started
    gw.generation.start()
    assert counter.started
    gw.generation.stop()
    assert counter.stopped


def test_observers_get_one_record_per_request(shout_feature):
    gw = GatewayHarness(load_text(CONFIG), Upstream())
    gw.clock.advance(100)
    gw.content(gw.request("GET", "http://gw/loud?q=1"))
    gw.content(gw.request("GET", "http://gw/missing"))
    records = shout_feature["counter"].records
    assert len(records) == 2
    ok, missing = records
    assert (ok.route, ok.status, ok.method, ok.path) == ("loud", 200, "GET", "/loud")
    assert ok.upstream == "app" and ok.target == "http://app" and ok.attempts == 1
    assert ok.bytes_out == 11 and ok.started == 100 and ok.error is None
    assert (missing.route, missing.status, missing.error) == (None, 404, "route_not_found")


def test_stage_factory_errors_refuse_the_config(shout_feature):
    config = load_text(CONFIG.replace("X-Shout", "Shout"))
    with pytest.raises(ConfigError):
        GatewayHarness(config, Upstream())
