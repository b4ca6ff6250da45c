"""
A route without layers (or only tracing) sends the gateway's forwarding
fields and the trace as prepared lines (`ForwardingPolicy.block`,
`ProxyRequest.prepared_fields`): the upstream sees what the per-field path
(`ForwardingPolicy.apply`, the trace stage) would have set.
"""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any, Dict, List, Tuple

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from tests.seam_wiring import Wired
from twistgate.config import load_text
from twistgate.generation import Generation
from twistgate.headers import fields_into
from twistgate.http import ForwardingPolicy

CASES = [
    ("192.0.2.7", "http", b"api.example:8080", b"HTTP/1.1"),
    ("::1", "https", b"a b", b"HTTP/1.1"),
    ("203.0.113.9", "http", b"", b"HTTP/1.0"),
]


@pytest.mark.parametrize("peer, scheme, host, version", CASES)
def test_the_block_holds_what_apply_sets(peer: str, scheme: str, host: bytes, version: bytes) -> None:
    spoofed = {b"X-Forwarded-For": [b"1.2.3.4"], b"Forwarded": [b"for=1.2.3.4"], b"X-Forwarded-Host": [b"evil"]}
    policy = ForwardingPolicy([])
    applied = {b"Accept": [b"*/*"], **spoofed}
    assert policy.apply(applied, peer, scheme, host, version) == peer
    raw = {b"Accept": [b"*/*"], **spoofed}
    block = policy.block(raw, peer, scheme, host, version)
    assert block is not None and raw == {b"Accept": [b"*/*"]}  # the client's own are replaced
    fields_into(raw, block)
    assert raw == applied
    assert policy.block({}, peer, scheme, host, version) is block  # made once


def test_a_trusted_peer_or_a_client_via_takes_the_field_path() -> None:
    trusting = ForwardingPolicy([ip_network("10.0.0.0/8")])
    raw = {b"X-Forwarded-For": [b"198.51.100.7"]}
    assert trusting.block(raw, "10.0.0.5", "http", b"h", b"HTTP/1.1") is None
    assert raw == {b"X-Forwarded-For": [b"198.51.100.7"]}  # left for `apply` to continue
    assert trusting.block({}, "192.0.2.1", "http", b"h", b"HTTP/1.1") is not None
    assert ForwardingPolicy([]).block({b"Via": [b"1.0 edge"]}, "192.0.2.1", "http", b"h", b"HTTP/1.1") is None


def _parsed(head: bytes) -> Tuple[bytes, Dict[bytes, List[bytes]]]:
    """A message head's first line, and its fields by name (each value as it came)."""
    line, *fields = head.split(b"\r\n")
    found: Dict[bytes, List[bytes]] = {}
    for field in fields:
        name, value = field.split(b": ", 1)
        found.setdefault(name, []).append(value)
    return line, found


def _head(wired: Wired, request: bytes) -> Tuple[bytes, Dict[bytes, List[bytes]]]:
    """The request line and fields the pooled upstream connection was sent."""
    wired.client.dataReceived(request)
    ((host, port, factory, _, _),) = wired.clock.tcpClients
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    wire = StringTransport()
    protocol.makeConnection(wire)
    return _parsed(wire.value().split(b"\r\n\r\n")[0])


SPOOFING = (
    b"GET /x HTTP/1.1\r\nHost: GW:8080\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n"
    b"X-Forwarded-Proto: https\r\nTraceparent: junk\r\nTracestate: a=1\r\nX-Request-Id: abc-1\r\n\r\n"
)


@pytest.mark.parametrize("route", ["", ", headers: {request: {set: {X-Extra: '1'}}}"])
def test_the_upstream_gets_each_field_once_with_or_without_layers(route: str) -> None:
    """The same fields whether the route has a layer (the per-field path) or not (prepared lines)."""
    wired = Wired(route=route)
    assert wired.generation.routes_by_name["all"].bare is (route == "")
    line, got = _head(wired, SPOOFING)
    assert line == b"GET /x HTTP/1.1"
    for name, value in [
        (b"X-Forwarded-For", b"192.0.2.7"), (b"Forwarded", b"for=192.0.2.7;host=GW:8080;proto=http"),
        (b"X-Forwarded-Proto", b"http"), (b"X-Forwarded-Host", b"GW:8080"), (b"Via", b"1.1 twistgate"),
        (b"X-Request-Id", b"abc-1"), (b"Host", b"127.0.0.1:9"),
    ]:
        assert got.pop(name) == [value]
    (parent,) = got.pop(b"Traceparent")
    assert parent.startswith(b"00-") and len(parent) == 55  # a new trace (the client's was junk)
    assert b"Tracestate" not in got  # ... so the client's state is dropped
    assert got.pop(b"X-Extra", [b"1"]) == [b"1"]
    assert got == {}


def test_a_continued_trace_is_sent_with_its_state_and_recorded() -> None:
    wired = Wired()
    parent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    _, got = _head(wired, b"GET / HTTP/1.1\r\nHost: gw\r\nTraceparent: %s\r\nTracestate: k=v\r\n\r\n" % parent)
    (sent,) = got[b"Traceparent"]
    assert sent.startswith(b"00-0af7651916cd43dd8448eb211c80319c-") and not sent.startswith(parent[:-2])
    assert got[b"Tracestate"] == [b"k=v"]


def test_a_client_via_is_continued_on_a_bare_route() -> None:
    wired = Wired()
    _, got = _head(wired, b"GET / HTTP/1.1\r\nHost: gw\r\nVia: 1.0 edge\r\n\r\n")
    assert got[b"Via"] == [b"1.0 edge, 1.1 twistgate"] and got[b"X-Forwarded-For"] == [b"192.0.2.7"]
    assert len(got[b"Traceparent"]) == 1


def test_fields_into_sets_each_line() -> None:
    raw: Dict[bytes, Any] = {b"Accept": [b"*/*"]}
    fields_into(raw, b"Via: 1.1 twistgate\r\nTraceparent: 00-a-b-01\r\n")
    assert raw == {b"Accept": [b"*/*"], b"Via": [b"1.1 twistgate"], b"Traceparent": [b"00-a-b-01"]}


def _answer_fields(upstream_head: bytes, body: bytes = b"hello") -> Dict[bytes, List[bytes]]:
    """The fields the client got for an upstream answer whose body came with its head (one `respond`)."""
    wired = Wired()
    upstream = wired.send(b"GET / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: abc-1\r\n\r\n")
    out = wired.answer(upstream, [upstream_head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)])
    head, _, got_body = out.partition(b"\r\n\r\n")
    assert got_body == body
    return _parsed(head)[1]


def test_a_whole_answer_carries_the_request_id_and_via_once() -> None:
    got = _answer_fields(b"HTTP/1.1 200 OK\r\nX-Request-Id: upstream-own\r\nDate: Fri, 04 Dec 2026 20:00:00 GMT\r\n")
    assert got[b"X-Request-Id"] == [b"abc-1"]  # the upstream's replaced
    assert got[b"Via"] == [b"1.1 twistgate"] and got[b"Content-Length"] == [b"5"]
    assert got[b"Date"] == [b"Fri, 04 Dec 2026 20:00:00 GMT"]


def test_a_whole_answer_continues_the_upstreams_via_and_gets_a_date() -> None:
    got = _answer_fields(b"HTTP/1.1 200 OK\r\nVia: 1.0 inner, 1.1 cache\r\n")
    assert got[b"Via"] == [b"1.0 inner, 1.1 cache, 1.1 twistgate"]
    assert got[b"X-Request-Id"] == [b"abc-1"] and len(got[b"Date"]) == 1


def test_a_head_answer_gets_its_fields_and_the_length_a_get_would_have() -> None:
    wired = Wired()
    upstream = wired.send(b"HEAD / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: abc-1\r\n\r\n")
    out = wired.answer(upstream, [b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"])
    head, _, body = out.partition(b"\r\n\r\n")
    got = _parsed(head)[1]
    assert body == b"" and got[b"Content-Length"] == [b"7"]
    assert got[b"X-Request-Id"] == [b"abc-1"] and got[b"Via"] == [b"1.1 twistgate"]



ROUTES = """
listeners: [{name: public, endpoint: "tcp:0"}]
upstreams:
  app: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - {name: plain, path: "/a", upstream: app}
  - {name: edited, path: "/b", upstream: app, headers: {request: {set: {X-Extra: "1"}}}}
  - {name: answered, path: "/c", respond: {status: 204}}
"""


@pytest.mark.parametrize("propagate", [True, False])
def test_which_routes_are_bare(propagate: bool) -> None:
    """No layer but tracing (or none at all): bare; another layer keeps the chain; an own answer is never bare."""
    generation = Generation(load_text(ROUTES + "tracing: {propagate: %s}\n" % str(propagate).lower()), MemoryReactorClock())
    routes = generation.routes_by_name
    tracer = generation.services.tracer
    assert (tracer is not None) is propagate
    assert routes["plain"].bare and routes["plain"].trace is tracer
    assert not routes["edited"].bare and routes["edited"].trace is None
    assert not routes["answered"].bare
