"""DNS discovery with a scripted resolver on a Clock (twistgate.upstream.discovery, through Upstream)."""

from __future__ import annotations

from twisted.internet.error import DNSLookupError

from twistgate.upstream.discovery import srv_weight, system_nameservers

from tests.upstream.fakes import ScriptedResolver, a, aaaa, forward, make_upstream, outcome, srv


def discovered(text, resolver, agent=None):
    upstream, agent, clock = make_upstream(text, resolver=resolver, agent=agent)
    upstream.start()
    return upstream, agent, clock


def addresses(upstream):
    return sorted(((t.address, t.port) for t in upstream.targets), key=lambda x: (x[0] or "", x[1]))


def test_host_names_are_resolved_and_keep_their_host_header():
    resolver = ScriptedResolver()
    resolver.a["users.internal"] = [a("users.internal", "10.0.0.5"), a("users.internal", "10.0.0.6")]
    resolver.aaaa["users.internal"] = [aaaa("users.internal", "fd00::7")]
    upstream, agent, clock = discovered(
        "targets: [{url: 'http://users.internal:8080', weight: 2}, {url: 'http://127.0.0.1:9000'}]\ndiscovery: {interval: 30s}",
        resolver,
    )
    assert addresses(upstream) == [(None, 9000), ("10.0.0.5", 8080), ("10.0.0.6", 8080), ("fd00::7", 8080)]
    named = [t for t in upstream.targets if t.address]
    assert {t.host_header for t in named} == {b"users.internal:8080"} and {t.weight for t in named} == {2}
    assert {t.base for t in named} == {b"http://10.0.0.5:8080", b"http://10.0.0.6:8080", b"http://[fd00::7]:8080"}
    for _ in range(4):
        forward(upstream)
    sent = [s for s in agent.sent]
    assert all(s.host in (b"users.internal:8080", b"127.0.0.1:9000") for s in sent)


def test_re_resolution_keeps_state_of_targets_that_stay_and_in_flight_requests_finish():
    resolver = ScriptedResolver()
    resolver.a["svc"] = [a("svc", "10.0.0.1"), a("svc", "10.0.0.2")]
    upstream, agent, clock = discovered("targets: [{url: 'http://svc'}]\ndiscovery: {interval: 10s, family: ipv4}", resolver)
    one = next(t for t in upstream.targets if t.address == "10.0.0.1")
    two = next(t for t in upstream.targets if t.address == "10.0.0.2")
    one.probe_failures = 7  # some state to keep
    d, call = forward(upstream)  # in flight on one of them
    busy = call.target
    resolver.a["svc"] = [a("svc", "10.0.0.1"), a("svc", "10.0.0.3")]
    clock.advance(10)
    assert addresses(upstream) == [("10.0.0.1", 80), ("10.0.0.3", 80)]
    assert next(t for t in upstream.targets if t.address == "10.0.0.1") is one and one.probe_failures == 7
    agent.sent[0].answer(200)
    assert outcome(d).code == 200 and busy.in_flight == 1  # the body is still to come, even if `two` left
    assert two not in upstream.targets


def test_a_failed_or_empty_lookup_keeps_the_last_good_set():
    resolver = ScriptedResolver()
    resolver.a["svc"] = [a("svc", "10.0.0.1")]
    upstream, _, clock = discovered("targets: [{url: 'http://svc'}]\ndiscovery: {interval: 10s, family: ipv4}", resolver)
    resolver.a["svc"] = DNSLookupError("SERVFAIL")
    clock.advance(10)
    assert addresses(upstream) == [("10.0.0.1", 80)]
    resolver.a["svc"] = []
    clock.advance(10)
    assert addresses(upstream) == [("10.0.0.1", 80)]


def test_until_the_first_answer_the_name_is_used_as_written():
    resolver = ScriptedResolver()  # knows nothing yet
    upstream, agent, clock = discovered("targets: [{url: 'http://svc:81'}]\ndiscovery: {interval: 10s}", resolver)
    assert addresses(upstream) == [(None, 81)]
    forward(upstream)
    assert agent.sent[0].uri == b"http://svc:81/x"
    resolver.a["svc"] = [a("svc", "10.1.1.1")]
    clock.advance(10)
    assert addresses(upstream) == [("10.1.1.1", 81)]


def test_srv_gives_addresses_ports_weights_and_priorities():
    resolver = ScriptedResolver()
    name = "_http._tcp.users.service.consul"
    resolver.srv[name] = [
        srv(name, "n1.node.consul", 21000, priority=1, weight=10),
        srv(name, "n2.node.consul", 21001, priority=1, weight=30),
        srv(name, "backup.node.consul", 22000, priority=5, weight=1),
    ]
    resolver.additional[name] = [a("n1.node.consul", "10.0.1.1")]  # glue for n1 only
    resolver.a["n2.node.consul"] = [a("n2.node.consul", "10.0.1.2")]
    resolver.a["backup.node.consul"] = [a("backup.node.consul", "10.0.9.9")]
    upstream, agent, clock = discovered(f"targets: [{{srv: {name}}}]\ndiscovery: {{family: ipv4}}", resolver)
    assert addresses(upstream) == [("10.0.1.1", 21000), ("10.0.1.2", 21001), ("10.0.9.9", 22000)]
    assert ("A", "n1.node.consul") not in resolver.queries  # the glue was used
    by_address = {t.address: t for t in upstream.targets}
    assert (by_address["10.0.1.1"].weight, by_address["10.0.1.2"].weight) == (10, 30)
    assert by_address["10.0.1.1"].host_header == b"users.service.consul:21000"
    for _ in range(8):
        forward(upstream)
    hosts = [s.uri.split(b"/")[2] for s in agent.sent]
    assert hosts.count(b"10.0.1.2:21001") == 6 and hosts.count(b"10.0.1.1:21000") == 2  # 3:1, no backup
    for t in upstream.targets:
        if t.priority == 0:
            t.healthy = False
    upstream._refresh()
    forward(upstream)
    assert agent.sent[-1].uri.split(b"/")[2] == b"10.0.9.9:22000"  # the next priority takes over


def test_srv_without_answers_means_no_targets_yet():
    resolver = ScriptedResolver()
    upstream, agent, _ = discovered("targets: [{srv: _http._tcp.nothing.example}]", resolver)
    d, _ = forward(upstream)
    assert outcome(d).value.code == "no_healthy_upstream" and agent.sent == []


def test_srv_weights_are_scaled():
    assert [srv_weight(w, 65535) for w in (0, 1, 65535, 32768)] == [1, 1, 100, 50]
    assert [srv_weight(w, 30) for w in (0, 10, 30)] == [1, 10, 30]


def test_system_nameservers(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch example\n")
    assert system_nameservers(str(conf)) == [("10.0.0.2", 53), ("fe80::1", 53)]
    assert system_nameservers(str(tmp_path / "missing")) == [("127.0.0.1", 53)]


def test_stop_stops_the_loop():
    resolver = ScriptedResolver()
    resolver.a["svc"] = [a("svc", "10.0.0.1")]
    upstream, _, clock = discovered("targets: [{url: 'http://svc'}]\ndiscovery: {interval: 10s, family: ipv4}", resolver)
    upstream.stop()
    clock.advance(100)
    assert len(resolver.queries) == 1 and clock.getDelayedCalls() == []
