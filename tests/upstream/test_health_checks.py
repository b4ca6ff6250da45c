"""Active health checks on a Clock (twistgate.upstream.health, through Upstream)."""

from __future__ import annotations

from random import Random

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError

from twistgate.upstream.health import HealthChecker
from twistgate.upstream.settings import HealthCheckConfig
from twistgate.upstream.failures import NoHealthyUpstream

from tests.upstream.fakes import ScriptedAgent, forward, make_upstream, outcome


class T:
    def __init__(self, name):
        self.label = name
        self.healthy = True
        self.probe_successes = self.probe_failures = 0
        self.last_error = None


class Probes:
    """probe(target): answers from `status[name]` (an int, an exception, or "hang")."""

    def __init__(self):
        self.status = {}
        self.calls = []

    def __call__(self, target):
        self.calls.append(target.label)
        value = self.status.get(target.label, 200)
        if value == "hang":
            return Deferred()
        if isinstance(value, Exception):
            return fail(value)
        return succeed(value)


def checker(clock, probes, **settings):
    changes = []
    config = HealthCheckConfig(path="/health", jitter=0, **settings)
    return HealthChecker(config, clock, probes, changes.append, Random(1), "app"), changes


def test_thresholds_move_a_target_out_and_back(clock=None):
    from twisted.internet.task import Clock

    clock = Clock()
    probes = Probes()
    t = T("a")
    hc, changes = checker(clock, probes, interval=10, timeout=1, unhealthy_threshold=3, healthy_threshold=2)
    hc.start([t])
    assert probes.calls == ["a"]  # the first probe at once
    probes.status["a"] = 503
    clock.advance(10)
    clock.advance(10)
    assert t.healthy  # two failures: not yet
    clock.advance(10)
    assert not t.healthy and changes == [t] and t.last_error == "health check answered 503"
    probes.status["a"] = 200
    clock.advance(10)
    assert not t.healthy
    clock.advance(10)
    assert t.healthy and changes == [t, t]
    hc.stop()
    assert clock.getDelayedCalls() == []


def test_a_probe_that_hangs_fails_at_the_timeout():
    from twisted.internet.task import Clock

    clock = Clock()
    probes = Probes()
    probes.status["a"] = "hang"
    t = T("a")
    hc, _ = checker(clock, probes, interval=10, timeout=2, unhealthy_threshold=1)
    hc.start([t])
    clock.advance(1.9)
    assert t.healthy
    clock.advance(0.1)
    assert not t.healthy and t.last_error == "health check timed out"
    hc.stop()
    assert clock.getDelayedCalls() == []


def test_expected_statuses_and_connection_errors():
    from twisted.internet.task import Clock

    clock = Clock()
    probes = Probes()
    a, b = T("a"), T("b")
    probes.status = {"a": 204, "b": ConnectionRefusedError("nope")}
    hc, _ = checker(clock, probes, interval=5, timeout=1, unhealthy_threshold=1, expected_statuses=((204, 204),))
    hc.start([a, b])
    assert a.healthy and not b.healthy
    assert "refused" in b.last_error.lower() or "nope" in b.last_error


def test_jitter_delays_each_probe_within_its_bound():
    from twisted.internet.task import Clock

    clock = Clock()
    probes = Probes()
    config = HealthCheckConfig(path="/h", interval=10, timeout=1, jitter=3)
    hc = HealthChecker(config, clock, probes, lambda t: None, Random(2), "app")
    hc.start([T("a")])
    assert probes.calls == []
    clock.advance(3)
    assert probes.calls == ["a"]
    hc.stop()
    assert clock.getDelayedCalls() == []


def test_upstream_probes_its_targets_and_routes_around_the_unhealthy():
    """Through a whole Upstream: probes are real GETs of the path with the target's Host."""
    agent = ScriptedAgent(auto={b"a": 500, b"b": 200})
    upstream, agent, clock = make_upstream(
        "targets: [{url: 'http://a'}, {url: 'http://b'}]\n"
        "health_check: {path: /healthz, interval: 5s, timeout: 1s, jitter: 0s, unhealthy_threshold: 2, healthy_threshold: 1}",
        agent=agent,
    )
    upstream.start()
    clock.advance(5)
    probes = [s for s in agent.sent if s.uri.endswith(b"/healthz")]
    assert [(s.method, s.host) for s in probes[:2]] == [(b"GET", b"a"), (b"GET", b"b")]
    assert [t.healthy for t in upstream.targets] == [False, True]
    before = len(agent.sent)
    for _ in range(4):
        forward(upstream)
    assert [s.host for s in agent.sent[before:]] == [b"b"] * 4
    agent.auto[b"b"] = 500
    clock.advance(5)
    clock.advance(5)
    d, _ = forward(upstream)
    assert outcome(d).check(NoHealthyUpstream)
    agent.auto[b"a"] = 200
    clock.advance(5)
    assert upstream.targets[0].healthy
    upstream.stop()
    assert clock.getDelayedCalls() == []


def test_upstreams_without_a_health_check_send_no_probes():
    upstream, agent, clock = make_upstream("targets: [{url: 'http://a'}]")
    upstream.start()
    clock.advance(3600)
    assert agent.sent == [] and clock.getDelayedCalls() == []
    upstream.stop()


def test_start_and_stop_are_counted_for_reused_upstreams():
    """A reload that reuses the upstream starts it again before the old generation stops it."""
    upstream, agent, clock = make_upstream("targets: [{url: 'http://a'}]\nhealth_check: {path: /h, interval: 5s, jitter: 0s}", agent=ScriptedAgent(auto={b"a": 200}))
    upstream.start()
    upstream.start()
    upstream.stop()
    clock.advance(5)
    assert len(agent.sent) == 2  # still probing
    upstream.stop()
    clock.advance(50)
    assert len(agent.sent) == 2 and clock.getDelayedCalls() == []
