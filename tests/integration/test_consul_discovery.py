"""
Consul discovery with real sockets: a gateway forwarding to upstream
servers it found through the recorded-response fake Consul
(tests/fake_consul.py, on 127.0.0.1); the catalogue changes and traffic
moves at once (blocking query); Consul goes down and the last good list
stays.
"""

from __future__ import annotations

from typing import Any, List

import pytest_twisted
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.fake_consul import FakeConsul, instance
from tests.integration.conftest import http_request


class Named(Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name.encode()

    def render(self, request: Any) -> bytes:
        return self.name


def serve(servers: Any, resource: Resource) -> Any:
    """Listen for `resource`; the port object, so the test can stop it (teardown stops it otherwise)."""
    site = Site(resource)
    site.log = lambda request: None
    servers.listen(site)
    return servers.ports[-1]


def bodies(port: int, count: int) -> List[bytes]:
    return [http_request(port, "GET", "/").body for _ in range(count)]


def sleep(reactor: Any, seconds: float) -> Any:
    return deferLater(reactor, seconds, lambda: None)


@pytest_twisted.inlineCallbacks
def test_traffic_follows_the_consul_catalogue(servers, reactor):
    one = servers.upstream(Named("one"))
    two = servers.upstream(Named("two"))
    consul = FakeConsul(reactor, token="s3cret")
    consul_port = serve(servers, consul)
    consul.set("users", [instance("users", one, "127.0.0.1", number=1)])
    port, generation = servers.gateway(
        """
        listeners: [{name: public, endpoint: "tcp:0"}]
        upstreams:
          users:
            targets_from: {type: consul, url: "http://127.0.0.1:{consul}", service: users, token: s3cret, interval: 200ms}
        routes:
          - {name: all, path: /*, upstream: users}
        """,
        consul=consul_port.getHost().port,
    )
    yield generation.start()
    yield sleep(reactor, 0.2)
    assert (yield deferToThread(bodies, port, 3)) == [b"one"] * 3

    for _ in range(50):  # until the gateway's blocking query waits in Consul (after its pause)
        if consul.waiting():
            break
        yield sleep(reactor, 0.1)
    assert consul.waiting() == 1
    consul.set("users", [instance("users", two, "", node_address="127.0.0.1", number=2)])
    yield sleep(reactor, 0.2)  # less than the interval: the blocking query woke
    assert (yield deferToThread(bodies, port, 3)) == [b"two"] * 3
    blocking = [r for r in consul.requests if "index" in r["args"]]
    assert blocking and all(r["token"] == b"s3cret" for r in consul.requests)

    consul.failing = 500  # Consul breaks, then goes away altogether
    asked = len(consul.requests)
    yield sleep(reactor, 0.5)
    assert len(consul.requests) > asked  # asked again, and failed
    servers.ports.remove(consul_port)
    yield consul_port.stopListening()
    yield sleep(reactor, 0.5)
    assert (yield deferToThread(bodies, port, 3)) == [b"two"] * 3
    snapshot = generation.upstreams["users"].snapshot()
    assert [t["url"] for t in snapshot] == [f"http://127.0.0.1:{two}"]
