"""
Balancers, health checks and target sources from packages, inside an
`Upstream` on a Clock (twistgate.upstream.wiring / external / targets_from):
what they are handed, and their isolation (raise, hang, wrong answer).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from twistgate.config import ConfigError
from twistgate.errors import GatewayError, error_body
from twistgate.plugins.extension_points import BALANCERS, DISCOVERY, HEALTH_CHECKS, using_extensions
from twistgate.plugins.views import RequestInfo, TargetInfo
from twistgate.upstream.balancer import RoundRobin

from tests.upstream.fakes import ScriptedAgent, forward, make_upstream, outcome, proxy_request, upstream_config


class Script:
    """What a fake extension does next: an answer, an exception, "hang" or a Deferred."""

    def __init__(self) -> None:
        self.next: Any = None
        self.calls: List[Any] = []

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        value = self.next(*args) if callable(self.next) else self.next
        if isinstance(value, Exception):
            raise value
        if value == "hang":
            return Deferred()
        return value


def extensions(script: Script) -> Dict[str, Any]:
    class Balancer:
        def __init__(self, options: Dict[str, Any]) -> None:
            self.options = options

        def choose(self, targets: Any, request: Any) -> Any:
            return script(targets, request)

    class Check:
        def __init__(self, options: Dict[str, Any]) -> None:
            pass

        def check(self, target: Any) -> Any:
            return script(target)

    class Source:
        def __init__(self, options: Dict[str, Any]) -> None:
            pass

        def targets(self) -> Any:
            return script()

    return {BALANCERS: {"mine": Balancer}, HEALTH_CHECKS: {"mine": Check}, DISCOVERY: {"mine": Source}}


def upstream_with(script: Script, text: str, clock: Optional[Clock] = None, agent: Any = None) -> Any:
    with using_extensions(extensions(script)):
        upstream, agent, clock = make_upstream(text, clock=clock, agent=agent or ScriptedAgent(auto={b"a": 200, b"b": 200}))
    return upstream, agent, clock


TWO = "targets: [{url: 'http://a'}, {url: 'http://b'}]\n"


# -- balancers -------------------------------------------------------------------


def test_a_package_balancer_is_handed_views_and_its_choice_is_used():
    """choose(targets, request): TargetInfo (.url) and RequestInfo (.method, .path, .client_ip, .headers.get)."""
    script = Script()
    script.next = lambda targets, request: targets[1]
    upstream, agent, _ = upstream_with(script, TWO + "balance: mine\n")
    request = proxy_request(b"POST", "/v1/x", headers={b"X-User": [b"ann"]}, client_ip="10.9.8.7")
    d, call = forward(upstream, request)
    assert outcome(d).code == 200 and agent.hosts() == [b"b"]
    targets, seen = script.calls[0]
    assert [t.url for t in targets] == ["http://a", "http://b"] and all(isinstance(t, TargetInfo) for t in targets)
    assert [t.weight for t in targets] == [1, 1] and targets[0].address is None
    assert isinstance(seen, RequestInfo)
    assert (seen.method, seen.path, seen.client_ip, seen.request_id) == ("POST", "/v1/x", "10.9.8.7", "r1")
    assert seen.headers.get("x-user") == "ann" and seen.headers.get("X-None") is None


def test_a_deferred_choice_is_waited_for():
    """An async balancer: the attempt starts when its Deferred fires."""
    script = Script()
    chosen: Deferred = Deferred()
    script.next = lambda targets, request: chosen
    upstream, agent, clock = upstream_with(script, TWO + "balance: mine\n")
    d, _ = forward(upstream)
    assert agent.sent == []
    chosen.callback(script.calls[0][0][0])
    assert outcome(d).code == 200 and agent.hosts() == [b"a"]
    assert clock.getDelayedCalls() == [] or all(not c.active() for c in clock.getDelayedCalls())


@pytest.mark.parametrize("behaviour", [RuntimeError("boom"), "hang", "not a target", "foreign"])
def test_a_failing_balancer_answers_503_for_that_request_only(behaviour):
    """Raise, hang (1s), a wrong type or a target it was not given: 503 balancer_error, logged with its name."""
    script = Script()
    script.next = behaviour if behaviour != "foreign" else (lambda targets, request: TargetInfo.from_url("http://z"))
    upstream, agent, clock = upstream_with(script, TWO + "balance: mine\n")
    with capturedLogs() as events:
        d, _ = forward(upstream)
        clock.advance(1)
    failure = outcome(d)
    assert failure.check(GatewayError) and failure.value.status == 503 and failure.value.code == "balancer_error"
    assert json.loads(error_body(failure.value.code, failure.value.message, "r1"))["error"] == "balancer_error"
    assert agent.sent == [] and any(e.get("extension") == "mine" for e in events)
    script.next = lambda targets, request: targets[0]
    d, _ = forward(upstream)  # the next request is fine
    assert outcome(d).code == 200


def test_a_choice_whose_breaker_is_open_is_asked_again_without_it():
    """Breaker admission stays the gateway's: an open target is taken out and the balancer chooses again."""
    script = Script()
    script.next = lambda targets, request: targets[0]
    upstream, agent, _ = upstream_with(script, TWO + "balance: mine\ncircuit_breaker: {failure_threshold: 1}\n")
    upstream.targets[0].breaker.record(upstream.targets[0].breaker.admit(), False)  # a's breaker opens
    d, _ = forward(upstream)
    assert outcome(d).code == 200 and agent.hosts() == [b"b"]


def test_cancelling_while_the_balancer_chooses():
    """The client goes away during a slow choice: nothing is sent, nothing is logged as the plugin's fault."""
    script = Script()
    script.next = "hang"
    upstream, agent, clock = upstream_with(script, TWO + "balance: mine\n")
    with capturedLogs() as events:
        d, _ = forward(upstream)
        d.cancel()
        clock.advance(5)
    assert agent.sent == [] and [e for e in events if e.get("extension")] == []


def test_the_built_in_strategies_offer_the_public_method_too():
    """round_robin's choose() over views, as a package's balancer would be called."""
    targets = [TargetInfo.from_url("http://a:1"), TargetInfo.from_url("http://b:2")]
    rr = RoundRobin()
    assert [rr.choose(targets, RequestInfo.build()).url for _ in range(3)] == ["http://a:1", "http://b:2", "http://a:1"]


# -- health checks ----------------------------------------------------------------


HEALTH = TWO + "health_check: {type: mine, interval: 10s, timeout: 1s, jitter: 0s, unhealthy_threshold: 1, healthy_threshold: 1}\n"


@pytest.mark.parametrize("behaviour", [RuntimeError("boom"), "hang", "yes", False])
def test_a_failing_check_marks_the_target_unhealthy_and_keeps_checking(behaviour):
    """Raise, hang past the check's timeout, a non-bool answer, or False: unhealthy, with the reason."""
    script = Script()
    script.next = lambda target: behaviour if target.url == "http://a" else True
    upstream, agent, clock = upstream_with(script, HEALTH)
    with capturedLogs():
        upstream.start()
        clock.advance(1)
    a, b = upstream.targets
    assert not a.healthy and b.healthy and a.last_error
    if behaviour is not False:
        assert "mine" in a.last_error or "timed out" in a.last_error
    d, _ = forward(upstream)
    assert outcome(d).code == 200 and agent.hosts() == [b"b"]
    script.next = True
    clock.advance(10)
    assert a.healthy  # the loop went on after the failure
    upstream.stop()


def test_a_check_gets_a_view_of_the_target():
    script = Script()
    script.next = True
    upstream, _, _ = upstream_with(script, HEALTH)
    upstream.start()
    assert sorted(t.url for (t,) in script.calls) == ["http://a", "http://b"]
    assert all(isinstance(t, TargetInfo) for (t,) in script.calls)
    upstream.stop()


def test_the_tcp_check_connects_and_sends_nothing():
    """health_check: {type: tcp}: a connection attempt to each target's address and port."""
    reactor = MemoryReactorClock()
    upstream, _, _ = make_upstream(
        "targets: [{url: 'http://10.0.0.5:8080'}, {url: 'http://[fd00::1]:9000'}]\n"
        "health_check: {type: tcp, interval: 5s, timeout: 1s, jitter: 0s, unhealthy_threshold: 1}\n",
        clock=reactor,
    )
    upstream.start()
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("10.0.0.5", 8080), ("fd00::1", 9000)]
    reactor.advance(1)  # no connection within the timeout: unhealthy
    assert [t.healthy for t in upstream.targets] == [False, False]
    assert "timed out" in upstream.targets[0].last_error
    upstream.stop()


def test_health_check_types_and_their_options_are_validated():
    """tcp needs no path; http (the default) does; a package's check gets its declared options."""
    assert upstream_config(TWO + "health_check: {type: tcp}\n").policies["health_check"].type == "tcp"
    with pytest.raises(ConfigError, match=r"health_check.path: required key 'path' is missing"):
        upstream_config(TWO + "health_check: {type: http}\n")
    with pytest.raises(ConfigError, match=r"health_check.path: unknown key 'path'"):
        upstream_config(TWO + "health_check: {type: tcp, path: /x}\n")


# -- targets_from ------------------------------------------------------------------


SOURCE = "targets_from: {type: mine, interval: 10s, timeout: 2s}\n"


def urls(upstream: Any) -> List[str]:
    return [t.url for t in upstream.targets]


def test_a_source_lists_the_targets_and_changes_keep_state():
    """Every interval; targets that stay keep their state, new ones are added, gone ones removed."""
    script = Script()
    script.next = ["http://a:80", "http://b:80"]
    upstream, agent, clock = upstream_with(script, SOURCE)
    assert upstream.targets == ()
    upstream.start()
    assert urls(upstream) == ["http://a", "http://b"]
    a = upstream.targets[0]
    a.probe_failures = 3
    script.next = succeed(["http://a:80", "http://c:80"])
    clock.advance(10)
    assert urls(upstream) == ["http://a", "http://c"] and upstream.targets[0] is a and a.probe_failures == 3
    upstream.stop()
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("behaviour", [RuntimeError("down"), "hang", "http://a:80", [1, 2], ["ftp://x"]])
def test_a_failing_source_leaves_the_targets_as_they_were(behaviour):
    """Raise, hang past its timeout, not a list, not URLs: the last good list stays, logged with its name."""
    script = Script()
    script.next = ["http://a:80"]
    upstream, _, clock = upstream_with(script, SOURCE)
    upstream.start()
    script.next = behaviour
    with capturedLogs() as events:
        clock.advance(10)
        clock.advance(2)
    assert urls(upstream) == ["http://a"]
    assert any(e.get("extension") == "mine" for e in events)
    assert any("keeping the last good list" in e.get("log_format", "") for e in events)
    script.next = ["http://b:80"]
    clock.advance(10)
    assert urls(upstream) == ["http://b"]
    upstream.stop()


def test_targets_from_is_instead_of_targets():
    with using_extensions(extensions(Script())):
        with pytest.raises(ConfigError, match="either 'targets' or 'targets_from', not both"):
            upstream_config(TWO + SOURCE)
        with pytest.raises(ConfigError, match="'discovery' re-resolves the host names of 'targets'"):
            upstream_config(SOURCE + "discovery: {interval: 5s}\n")
        with pytest.raises(ConfigError, match=r"targets_from.type: required key 'type' is missing"):
            upstream_config("targets_from: {interval: 5s}\n")


def test_dns_as_a_source(monkeypatch):
    """targets_from: {type: dns, name, port}: addresses from A records, the name kept as the Host."""
    from tests.upstream.fakes import ScriptedResolver, a

    resolver = ScriptedResolver()
    resolver.a["users.internal"] = [a("users.internal", "10.0.0.5"), a("users.internal", "10.0.0.6")]
    upstream, agent, clock = make_upstream(
        "targets_from: {type: dns, name: users.internal, port: 8080, family: ipv4, interval: 30s}\n", resolver=resolver
    )
    upstream.start()
    assert sorted((t.address, t.port, t.host_header) for t in upstream.targets) == [
        ("10.0.0.5", 8080, b"users.internal:8080"),
        ("10.0.0.6", 8080, b"users.internal:8080"),
    ]
    resolver.a["users.internal"] = RuntimeError("SERVFAIL")
    clock.advance(30)
    assert len(upstream.targets) == 2  # the last good set
    upstream.stop()
