"""
Consul discovery (twistgate.upstream.consul) against the recorded-response
fake (tests/fake_consul.py) through treq's StubTreq, on a Clock: parsing,
blocking queries, the token, and keeping the last good list.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from twistgate.config import ConfigError
from twistgate.upstream.consul import ConsulDiscovery, ConsulError, ConsulOptions, parse_health_entries

from tests.fake_consul import FakeConsul, instance
from tests.upstream.fakes import make_upstream, outcome, upstream_config


def urls(resolved: List[Any]) -> List[str]:
    return [r.config.url for r in resolved]


# -- the answer ----------------------------------------------------------------


def test_addresses_ports_weights_and_the_node_address_fallback():
    """Service.Address, else Node.Address; Service.Port; Weights.Passing; IPv6 in brackets."""
    entries = [
        instance("users", 8080, "10.1.0.5", weight=3, number=1),
        instance("users", 8081, "", node_address="10.2.0.9", number=2),  # the node's address
        instance("users", 9000, "fd00::7", number=3),
    ]
    resolved = parse_health_entries(entries)
    assert urls(resolved) == ["http://10.1.0.5:8080", "http://10.2.0.9:8081", "http://[fd00::7]:9000"]
    assert [r.weight for r in resolved] == [3, 1, 1]
    assert urls(parse_health_entries(entries[:1], "https")) == ["https://10.1.0.5:8080"]


def test_failing_checks_and_unusable_entries_are_left_out():
    """An entry with a critical check (as passing=1 would drop it), no address or no port is skipped."""
    broken_port = instance("users", 8080, "10.0.0.3", number=3)
    broken_port["Service"]["Port"] = 0
    entries = [
        instance("users", 8080, "10.0.0.1", number=1),
        instance("users", 8080, "10.0.0.2", status="critical", number=2),
        broken_port,
        instance("users", 8080, "", node_address="", number=4),
    ]
    assert urls(parse_health_entries(entries)) == ["http://10.0.0.1:8080"]
    assert parse_health_entries([]) == []


@pytest.mark.parametrize("body", [{"Service": {}}, "x", [1], [{"Node": {}}]])
def test_an_answer_that_is_not_the_documented_json_fails(body):
    with pytest.raises(ConsulError):
        parse_health_entries(body)


# -- queries ------------------------------------------------------------------------


def consul_for(fake: FakeConsul, clock: Clock, **options: Any) -> ConsulDiscovery:
    settings = {"url": "http://consul.test:8500", "service": "users", **options}
    return ConsulDiscovery(ConsulOptions(**settings), StubTreq(fake), clock, interval=5.0, timeout=2.0)


def fetched(consul: ConsulDiscovery) -> Any:
    d = consul.fetch()
    consul.client.flush()
    return outcome(d)


def test_the_first_query_then_blocking_queries_that_wake_on_a_change():
    """index + wait after the first answer; a change answers the waiting query at once."""
    clock = Clock()
    fake = FakeConsul(clock)
    fake.set("users", [instance("users", 8080, "10.0.0.1")])
    consul = consul_for(fake, clock, tag="v2", datacenter="dc1")
    fake.catalogue["users"][0]["Service"]["Tags"] = ["v2"]
    assert urls(fetched(consul)) == ["http://10.0.0.1:8080"]
    assert fake.requests[0]["path"] == "/v1/health/service/users"
    assert fake.requests[0]["args"] == {"passing": ["1"], "tag": ["v2"], "dc": ["dc1"]}
    assert consul.index == fake.index and consul.next_delay(True) == 1.0

    d = consul.fetch()
    consul.client.flush()
    assert fake.requests[1]["args"]["index"] == [str(fake.index)] and fake.requests[1]["args"]["wait"] == ["5000ms"]
    assert fake.waiting() == 1  # blocked in Consul
    fake.set("users", [instance("users", 8080, "10.0.0.2", tags=("v2",))])
    consul.client.flush()
    assert urls(outcome(d)) == ["http://10.0.0.2:8080"]


def test_a_blocking_query_without_change_answers_after_wait():
    clock = Clock()
    fake = FakeConsul(clock)
    fake.set("users", [instance("users", 8080, "10.0.0.1")])
    consul = consul_for(fake, clock)
    fetched(consul)
    d = consul.fetch()
    consul.client.flush()
    clock.advance(5)
    consul.client.flush()
    assert urls(outcome(d)) == ["http://10.0.0.1:8080"]


def test_without_an_index_header_it_polls_every_interval():
    clock = Clock()
    fake = FakeConsul(clock, blocking=False)
    fake.set("users", [instance("users", 8080, "10.0.0.1")])
    consul = consul_for(fake, clock)
    fetched(consul)
    fetched(consul)
    assert "index" not in fake.requests[1]["args"] and consul.next_delay(True) == 5.0


def test_an_index_that_goes_backwards_starts_over():
    """Consul's rule: reset to a plain query (a restored snapshot, a new leader)."""
    clock = Clock()
    fake = FakeConsul(clock)
    fake.set("users", [])
    consul = consul_for(fake, clock)
    fetched(consul)
    fake.index = 1  # Consul restarted with an older state
    consul.index = 50
    d = consul.fetch()
    consul.client.flush()
    clock.advance(5)  # it blocks until its wait is over, then answers index 1
    consul.client.flush()
    assert outcome(d) == [] and consul.index is None
    fetched(consul)
    assert "index" not in fake.requests[-1]["args"]


def test_the_token_goes_in_a_header_and_a_refusal_fails():
    """X-Consul-Token, never in the URL; a 403 is a failure (the last good list stays)."""
    clock = Clock()
    fake = FakeConsul(clock, token="s3cret")
    fake.set("users", [instance("users", 8080, "10.0.0.1")])
    assert urls(fetched(consul_for(fake, clock, token="s3cret"))) == ["http://10.0.0.1:8080"]
    assert fake.requests[0]["token"] == b"s3cret" and "s3cret" not in str(fake.requests[0]["args"])
    failure = fetched(consul_for(fake, clock, token="wrong"))
    assert failure.check(ConsulError) and "403 (check the token's ACL): ACL not found" in str(failure.value)


def test_no_answer_in_time_is_a_failure():
    """The request is bounded: timeout (plus the blocking wait and its jitter)."""
    clock = Clock()
    fake = FakeConsul(clock)
    fake.set("users", [])
    consul = consul_for(fake, clock)
    fetched(consul)
    d = consul.fetch()
    consul.client.flush()
    fake.clock = Clock()  # the fake's own wait never ends now
    clock.advance(5 + 5 / 16 + 2)
    failure = outcome(d)
    assert failure.check(ConsulError) and "no answer within" in str(failure.value)


# -- through an upstream -----------------------------------------------------------------


CONSUL = "targets_from: {type: consul, url: 'http://consul.test:8500', service: users, interval: 5s}\n"


def test_an_upstream_follows_the_catalogue_and_keeps_the_last_good_list():
    """Blocking queries move the targets as soon as Consul changes; Consul failing keeps them."""
    clock = Clock()
    fake = FakeConsul(clock)
    fake.set("users", [instance("users", 8080, "10.0.0.1", number=1)])
    stub = StubTreq(fake)
    upstream, agent, _ = make_upstream(CONSUL, clock=clock, side_client=stub)
    upstream.start()
    stub.flush()
    assert [t.url for t in upstream.targets] == ["http://10.0.0.1:8080"]
    clock.advance(1)  # the pause between blocking queries
    stub.flush()
    assert fake.waiting() == 1
    fake.set("users", [instance("users", 8080, "10.0.0.1", number=1), instance("users", 8080, "10.0.0.2", number=2)])
    stub.flush()
    assert [t.url for t in upstream.targets] == ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]

    fake.failing = 500
    with capturedLogs() as events:
        for _ in range(3):
            clock.advance(5)
            stub.flush()
    assert [t.url for t in upstream.targets] == ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
    assert any("keeping the last good list" in e.get("log_format", "") for e in events)
    fake.failing = None
    fake.set("users", [instance("users", 8080, "10.0.0.3", number=3)])
    clock.advance(5)
    stub.flush()
    assert [t.url for t in upstream.targets] == ["http://10.0.0.3:8080"]
    upstream.stop()


def test_consul_options_are_checked_when_the_config_is_read():
    with pytest.raises(ConfigError, match=r"targets_from.service: required key 'service' is missing"):
        upstream_config("targets_from: {type: consul, url: 'http://c:8500'}\n")
    with pytest.raises(ConfigError, match=r"invalid options: url: expected Consul's address"):
        upstream_config("targets_from: {type: consul, url: 'consul:8500', service: users}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'datacentre'; did you mean 'datacenter'\?"):
        upstream_config("targets_from: {type: consul, url: 'http://c', service: u, datacentre: dc2}\n")
    config = upstream_config("targets_from: {type: consul, url: 'http://c', service: u, token: '${T}'}\n".replace("${T}", "t0k"))
    assert "t0k" not in repr(config)  # the token is never shown
