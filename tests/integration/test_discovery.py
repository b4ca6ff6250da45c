"""
DNS discovery against a real DNS server (twisted.names, UDP on a free port of
127.0.0.1) whose records the test changes: A re-resolution, SRV targets, and
the last good set kept through DNS failures.  Upstreams listen on several
loopback addresses (127.0.0.1, 127.0.0.2...) with the same port, as pods of a
headless service would.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest
import pytest_twisted
from twisted.internet.defer import fail, succeed
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.names import common, dns, error, server
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.conftest import http_request


class Zone(common.ResolverBase):
    """An authoritative resolver over a dict the test edits; ``broken`` answers SERVFAIL."""

    def __init__(self) -> None:
        super().__init__()
        self.records: Dict[Tuple[str, int], List[Any]] = {}
        self.broken = False
        self.queries = 0

    def set(self, name: str, kind: int, payloads: List[Any]) -> None:
        self.records[(name, kind)] = [
            dns.RRHeader(name=name, type=kind, payload=p, ttl=0, auth=True) for p in payloads
        ]

    def _lookup(self, name: bytes, cls: int, kind: int, timeout: Any) -> Any:
        self.queries += 1
        if self.broken:
            return fail(error.DNSServerError(name))
        answers = self.records.get((name.decode().lower(), kind))
        if answers is None:
            if any(n == name.decode().lower() for n, _ in self.records):
                return succeed(([], [], []))  # the name exists, not this type
            return fail(error.DomainError(name))
        return succeed((answers, [], []))


@pytest.fixture
def zone(reactor):
    resolver = Zone()
    factory = server.DNSServerFactory(authorities=[resolver])
    port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory, reactor=reactor), interface="127.0.0.1")
    resolver.port = port.getHost().port
    yield resolver
    pytest_twisted.blockon(port.stopListening())


class Named(Resource):
    """Answers with its name and the Host it was asked for."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name.encode()

    def render(self, request: Any) -> bytes:
        return self.name + b" " + (request.getHeader(b"Host") or b"-")


def listen(servers: Any, reactor: Any, name: str, address: str, port: int = 0) -> int:
    site = Site(Named(name))
    site.log = lambda request: None
    listening = reactor.listenTCP(port, site, interface=address)
    servers.ports.append(listening)
    return listening.getHost().port


def gateway(servers: Any, upstream: str, **ports: int):
    yaml = (
        'listeners: [{name: public, endpoint: "tcp:0"}]\n'
        "upstreams:\n  app:\n" + "".join(f"    {line}\n" for line in upstream.strip("\n").splitlines()) +
        "routes:\n  - {name: all, path: /*, upstream: app}\n"
    )  # fmt: skip
    port, generation = servers.gateway(yaml, **ports)
    return generation.start().addCallback(lambda _: (port, generation))


def sleep(reactor: Any, seconds: float):
    return deferLater(reactor, seconds, lambda: None)


def bodies(port: int, count: int) -> List[bytes]:
    return [http_request(port, "GET", "/").body for _ in range(count)]


@pytest_twisted.inlineCallbacks
def test_host_names_are_re_resolved_and_keep_their_host_header(servers, zone, reactor):
    one = listen(servers, reactor, "one", "127.0.0.1")
    listen(servers, reactor, "two", "127.0.0.2", one)  # same port, another address
    zone.set("svc.test", dns.A, [dns.Record_A("127.0.0.1")])
    port, generation = yield gateway(
        servers,
        """
        targets: [{url: "http://svc.test:{port}"}]
        discovery: {interval: 200ms, timeout: 1s, nameservers: ["127.0.0.1:{dns}"], family: ipv4}
        """,
        port=one,
        dns=zone.port,
    )
    yield sleep(reactor, 0.1)
    seen = yield deferToThread(bodies, port, 3)
    host = f"svc.test:{one}".encode()
    assert seen == [b"one " + host] * 3  # connected to the address, Host is the name
    zone.set("svc.test", dns.A, [dns.Record_A("127.0.0.1"), dns.Record_A("127.0.0.2")])
    yield sleep(reactor, 0.5)
    seen = yield deferToThread(bodies, port, 4)
    assert sorted(seen) == [b"one " + host] * 2 + [b"two " + host] * 2
    zone.set("svc.test", dns.A, [dns.Record_A("127.0.0.2")])
    yield sleep(reactor, 0.5)
    seen = yield deferToThread(bodies, port, 3)
    assert seen == [b"two " + host] * 3
    assert [t["address"] for t in generation.upstreams["app"].snapshot()] == ["127.0.0.2"]


@pytest_twisted.inlineCallbacks
def test_a_failing_dns_server_keeps_the_last_good_set(servers, zone, reactor):
    one = listen(servers, reactor, "one", "127.0.0.1")
    zone.set("svc.test", dns.A, [dns.Record_A("127.0.0.1")])
    port, generation = yield gateway(
        servers,
        """
        targets: [{url: "http://svc.test:{port}"}]
        discovery: {interval: 100ms, timeout: 200ms, nameservers: ["127.0.0.1:{dns}"], family: ipv4}
        """,
        port=one,
        dns=zone.port,
    )
    yield sleep(reactor, 0.2)
    zone.broken = True  # SERVFAIL from now on
    asked = zone.queries
    yield sleep(reactor, 0.5)
    assert zone.queries > asked  # it kept asking
    seen = yield deferToThread(bodies, port, 2)
    assert seen == [f"one svc.test:{one}".encode()] * 2
    zone.records.clear()
    zone.broken = False  # NXDOMAIN now: still no reason to drop the target
    yield sleep(reactor, 0.3)
    seen = yield deferToThread(bodies, port, 2)
    assert seen == [f"one svc.test:{one}".encode()] * 2


@pytest_twisted.inlineCallbacks
def test_srv_records_give_addresses_ports_and_weights(servers, zone, reactor):
    a = listen(servers, reactor, "a", "127.0.0.1")
    b = listen(servers, reactor, "b", "127.0.0.1")
    c = listen(servers, reactor, "c", "127.0.0.3")
    name = "_http._tcp.users.service.test"
    zone.set(name, dns.SRV, [dns.Record_SRV(1, 10, a, "n1.test"), dns.Record_SRV(1, 30, b, "n1.test")])
    zone.set("n1.test", dns.A, [dns.Record_A("127.0.0.1")])
    zone.set("n3.test", dns.A, [dns.Record_A("127.0.0.3")])
    port, generation = yield gateway(
        servers,
        """
        targets: [{srv: "_http._tcp.users.service.test"}]
        discovery: {interval: 200ms, nameservers: ["127.0.0.1:{dns}"], family: ipv4}
        """,
        dns=zone.port,
    )
    yield sleep(reactor, 0.2)
    seen = yield deferToThread(bodies, port, 8)
    assert sorted(seen) == sorted([f"a users.service.test:{a}".encode()] * 2 + [f"b users.service.test:{b}".encode()] * 6)
    # The service moves: one record goes, another comes; requests follow.
    zone.set(name, dns.SRV, [dns.Record_SRV(1, 10, b, "n1.test"), dns.Record_SRV(1, 10, c, "n3.test")])
    yield sleep(reactor, 0.5)
    seen = yield deferToThread(bodies, port, 4)
    assert sorted(s.split()[0] for s in seen) == [b"b", b"b", b"c", b"c"]
    assert sorted((t["address"], t["url"]) for t in generation.upstreams["app"].snapshot()) == [
        ("127.0.0.1", f"http://users.service.test:{b}"),
        ("127.0.0.3", f"http://users.service.test:{c}"),
    ]
