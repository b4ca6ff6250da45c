"""
A one-limit route's rate-limit fields go as ready header lines
(`ProxyResponse.prepared_fields`) when no layer after the rate limit sees
the response: the one-write answer sends them as they are, every other way
out (streamed, HTTP/2, ``engine: twisted``, a cache hit) spells them out.
Whichever way, the client gets each field once, with the values it got
when they were fields; a route where a later layer may read them keeps
fields.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import h2.config
import h2.connection
import h2.events
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from tests.seam_wiring import Wired
from twistgate.config import load_text
from twistgate.engine.http2_server import H2ServerFactory
from twistgate.generation import Generation
from twistgate.config.model import Rate
from twistgate.headers import Headers, canonical_name
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.listeners import site_for
from twistgate.plugins.hookspecs import hookimpl
from twistgate.plugins.registry import BUILTIN_PLUGINS, PluginRegistry
from twistgate.policies.ratelimit.algorithms import Decision, Outcome
from twistgate.policies.ratelimit.config import LimitConfig, RateLimitConfig
from twistgate.policies.ratelimit.headers import ONE_LIMIT_NAMES, OneLimitHeaders, sf_string
from twistgate.policies.ratelimit.stage import STATE_KEY, RateLimitStage
from twistgate.resource import GatewayResource

LIMITED = ", rate_limit: {rate: 100/s, key: ip}"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
GET = b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n"
CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
upstreams:
  app: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - {name: all, path: "/*", upstream: app%s}
%s
"""


def expected(remaining: int) -> Dict[bytes, List[bytes]]:
    """The five fields after `remaining` is left of the route's 100/s (as the field-by-field path writes them)."""
    return {
        b"Ratelimit-Policy": [b'"100-per-1s";q=100;w=1'],
        b"Ratelimit": [b'"100-per-1s";r=%d;t=1' % remaining],
        b"X-Ratelimit-Limit": [b"100"],
        b"X-Ratelimit-Remaining": [b"%d" % remaining],
        b"X-Ratelimit-Reset": [b"1"],
    }


def fields(answer: bytes) -> Dict[bytes, List[bytes]]:
    """An HTTP/1.1 answer's head fields by name, every occurrence kept (names case-folded as the wire has them)."""
    found: Dict[bytes, List[bytes]] = {}
    for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, value = line.split(b": ", 1)
        found.setdefault(name, []).append(value)
    return found


def limit_fields(found: Dict[bytes, List[bytes]]) -> Dict[bytes, List[bytes]]:
    """The rate-limit fields among `found`, by canonical name (each engine's spelling)."""
    limit: Dict[bytes, List[bytes]] = {}
    for name, values in found.items():
        if canonical_name(name) in ONE_LIMIT_NAMES:
            limit.setdefault(canonical_name(name), []).extend(values)
    return limit


def stage_of(generation: Generation) -> RateLimitStage:
    """The route's rate-limit stage, as its chain calls it on the way out."""
    layers = [call.function.__self__ for call in generation.routes_by_name["all"].chain._on_response]
    (stage,) = [layer for layer in layers if isinstance(layer, RateLimitStage)]
    return stage


class Gateway(Wired):
    """`Wired` on either HTTP/1.1 engine, with test plugins available."""

    def __init__(self, route: str = LIMITED, engine: str = "httptools", top: str = "", plugins: Any = None) -> None:
        self.clock = MemoryReactorClock()
        config = load_text(CONFIG % (route, top))
        self.generation = Generation(config, self.clock, plugin_registry=plugins)
        self.records = []
        self.resource = GatewayResource(self.generation)
        factory = site_for(self.resource, config.limits, self.clock, engine=engine, listener="public")
        self.client = factory.buildProtocol(None)
        self.client_wire = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4711))
        self.client.makeConnection(self.client_wire)
        self.upstreams = []


def test_the_usual_route_prepares_lines():
    assert stage_of(Gateway().generation).ready_lines


@pytest.mark.parametrize("reads", [[HEAD + b"hello"], [HEAD, b"hel", b"lo"]], ids=["one-write", "streamed"])
@pytest.mark.parametrize("engine", ["httptools", "twisted"])
def test_each_field_goes_out_once_with_the_values_fields_had(engine: str, reads: List[bytes]) -> None:
    gateway = Gateway(engine=engine)
    for remaining in (99, 98):
        answer = gateway.answer(gateway.send(GET), reads)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hello")
        assert limit_fields(fields(answer)) == expected(remaining)
        assert len(fields(answer)[b"X-Request-Id"]) == 1


OWN = [b"X-RateLimit-Limit: 7\r\nRateLimit: up;r=1\r\nX-Ratelimit-Reset: 9\r\n"] + [
    b"%s: 7\r\n" % name for name in (b"RateLimit-Policy", b"RateLimit", b"X-RateLimit-Limit", b"X-RateLimit-Remaining", b"X-RateLimit-Reset")
]


@pytest.mark.parametrize("own", OWN)
@pytest.mark.parametrize("reads", [[HEAD + b"hello"], [HEAD, b"hello"]], ids=["one-write", "streamed"])
def test_the_upstreams_own_fields_of_those_names_are_replaced_not_repeated(reads: List[bytes], own: bytes) -> None:
    gateway = Gateway()
    reads = [reads[0].replace(b"\r\n\r\n", b"\r\n" + own + b"\r\n", 1), *reads[1:]]
    answer = gateway.answer(gateway.send(GET), reads)
    assert limit_fields(fields(answer)) == expected(99)


def test_a_cache_hit_spells_them_out():
    gateway = Gateway(LIMITED + ", cache: {ttl: 60s}")
    assert stage_of(gateway.generation).ready_lines  # the cache sees the response before the rate limit
    cacheable = HEAD.replace(b"\r\n\r\n", b"\r\nCache-Control: max-age=60\r\n\r\n", 1)
    first = gateway.answer(gateway.send(GET), [cacheable + b"hello"])
    assert limit_fields(fields(first)) == expected(99)
    assert gateway.send(GET) is None  # answered from the cache
    hit = gateway.client_wire.value()
    assert hit.endswith(b"hello") and b"Cache-Status" in hit
    assert limit_fields(fields(hit)) == expected(98)


class Rewriting:
    """A plugin that runs after every stage on the way out and edits a rate-limit field."""

    @hookimpl(trylast=True)
    def on_response(self, request: Any, response: Any) -> None:
        raw = response.headers.raw
        raw[b"X-Ratelimit-Remaining"] = [b"seen " + raw[b"X-Ratelimit-Remaining"][0]]


REWRITING = PluginRegistry({**BUILTIN_PLUGINS, "rewriting": lambda options, context: Rewriting()})


@pytest.mark.parametrize("where", ["route", "global"])
def test_a_plugin_after_the_rate_limit_sees_fields(where: str) -> None:
    if where == "route":
        gateway = Gateway(LIMITED + ", plugins: {rewriting: {}}", plugins=REWRITING)
    else:
        gateway = Gateway(LIMITED, top="plugins: {rewriting: {}}", plugins=REWRITING)
    assert not stage_of(gateway.generation).ready_lines
    answer = gateway.answer(gateway.send(GET), [HEAD + b"hello"])
    assert fields(answer)[b"X-Ratelimit-Remaining"] == [b"seen 99"]


def test_the_outer_built_in_layers_keep_lines_and_a_header_transform_inside_too():
    route = LIMITED + ", cors: {origins: ['https://a.example']}, headers: {response: {set: {X-Ratelimit-Limit: '5'}}}"
    gateway = Gateway(route)
    assert stage_of(gateway.generation).ready_lines  # `headers` runs before the rate limit on the way out
    answer = gateway.answer(gateway.send(GET.replace(b"\r\n\r\n", b"\r\nOrigin: https://a.example\r\n\r\n")), [HEAD + b"hello"])
    assert limit_fields(fields(answer)) == expected(99)  # the rate limit's own value, as before
    assert fields(answer)[b"Access-Control-Allow-Origin"] == [b"https://a.example"]


def test_http2_gets_them_as_fields():
    gateway = Gateway()
    server = H2ServerFactory(gateway.resource, gateway.generation.config.limits, gateway.clock, listener="public")
    protocol = server.buildProtocol(IPv4Address("TCP", "192.0.2.7", 4711))
    wire = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4711))
    protocol.makeConnection(wire)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(b":method", b"GET"), (b":path", b"/x"), (b":scheme", b"http"), (b":authority", b"gw")], end_stream=True)
    gateway.client = protocol
    upstream = gateway.send(client.data_to_send())
    upstream.dataReceived(HEAD + b"hello")
    head: List[Tuple[bytes, bytes]] = []
    for event in client.receive_data(wire.value()):
        if isinstance(event, h2.events.ResponseReceived):
            head = list(event.headers)
    got: Dict[bytes, List[bytes]] = {}
    for name, value in head:
        if not name.startswith(b":"):
            got.setdefault(name, []).append(value)
    assert limit_fields(got) == expected(99)


@pytest.mark.parametrize("name", ["5-per-60s", 'we\\ird "name" 100%', "%d%s"])
def test_the_lines_hold_what_write_sets(name: str) -> None:
    config = RateLimitConfig(limits=(LimitConfig(rate=Rate(10, 1.0), burst=30, name=name),))
    stage = RateLimitStage(config, "api", None, ready_lines=True)
    one = OneLimitHeaders(sf_string(name).encode("ascii"), config.limits[0].limit(), stage.policy)
    for outcome in [Outcome(True, 4, 59_000_001, 0), Outcome(True, 0, 0, 0), Outcome(True, 29, 1, 0)]:
        for decision in (outcome, Decision(True, (outcome,))):  # the memory backend's, and the general one
            written: Dict[bytes, List[bytes]] = {b"Content-Type": [b"text/plain"]}
            one.write(written, Decision(True, (outcome,)))
            request = ProxyRequest(b"GET", "/")
            request.state[STATE_KEY] = decision
            response = ProxyResponse(200, Headers({b"Content-Type": [b"text/plain"], b"Ratelimit": [b"theirs"], b"X-Ratelimit-Reset": [b"9"]}))
            stage.on_response(request, response)
            assert response.headers.raw == {b"Content-Type": [b"text/plain"]}  # theirs go: ours would be sent twice
            lines = response.prepared_fields
            assert lines.count(b"\r\n") == 5 and lines.endswith(b"\r\n")
            response.spell_out_fields()
            assert response.headers.raw == written and response.prepared_fields == b""


def test_no_built_in_stage_answers_after_the_rate_limit_unless_outside_it():
    """
    `_lines_unseen` trusts the chain's order: only the policies before the rate
    limit (and plugins) see a response after it.  A ``trylast`` on_response of a
    built-in stage would run after it too.
    """
    import importlib
    import inspect
    import pkgutil

    import twistgate.ops
    import twistgate.policies

    late = []
    for package in (twistgate.policies, twistgate.ops):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                marker = getattr(getattr(cls, "on_response", None), "twistgate_impl", None)
                if marker is not None and (marker.get("trylast") or marker.get("wrapper") or marker.get("hookwrapper")):
                    late.append(cls)
    assert late == []


@pytest.mark.parametrize("reads", [[HEAD + b"hello"], [HEAD, b"hel", b"lo"]], ids=["one-write", "streamed"])
def test_a_route_whose_only_layer_out_is_the_rate_limit_answers_without_a_proxy_response(reads: List[bytes], monkeypatch: Any) -> None:
    """The chain hands the exchange the stage's lines (`RouteChain.response_lines`); the same fields go out."""
    import twistgate.exchange_respond

    gateway = Gateway()
    assert gateway.generation.routes_by_name["all"].chain.response_lines == stage_of(gateway.generation).response_lines

    def made(*args: Any) -> None:
        raise AssertionError("a ProxyResponse was made")

    monkeypatch.setattr(twistgate.exchange_respond, "ProxyResponse", made)
    for remaining in (99, 98):
        answer = gateway.answer(gateway.send(GET), reads)
        assert answer.endswith(b"hello") and limit_fields(fields(answer)) == expected(remaining)
        assert len(fields(answer)[b"X-Request-Id"]) == 1


def test_a_route_with_another_layer_out_goes_through_the_chain():
    gateway = Gateway(LIMITED + ", cors: {origins: ['https://a.example']}")
    assert stage_of(gateway.generation).ready_lines
    assert gateway.generation.routes_by_name["all"].chain.response_lines is None
    plugged = Gateway(LIMITED + ", plugins: {rewriting: {}}", plugins=REWRITING)
    assert plugged.generation.routes_by_name["all"].chain.response_lines is None
