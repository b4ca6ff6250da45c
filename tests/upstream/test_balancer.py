"""The balancing strategies over candidate targets (twistgate.upstream.balancer)."""

from collections import Counter
from random import Random

import pytest
from twisted.internet.task import Clock
from twistgate.headers import Headers

from twistgate.messages import ProxyRequest
from twistgate.upstream.balancer import (
    ConsistentHash,
    LatencyAverage,
    LeastConnections,
    LeastResponseTime,
    RoundRobin,
    WeightedRandom,
    cookie_value,
)
from twistgate.upstream.settings import HashKeyConfig


class T:
    """A stand-in target: what balancers read."""

    def __init__(self, name, weight=1, in_flight=0):
        self.name = self.ident = name
        self.weight = weight
        self.in_flight = in_flight
        self.cw = 0
        self.latency = LatencyAverage()

    def __repr__(self):
        return self.name


def names(picks):
    return [t.name for t in picks]


def balanced(balancer, targets):
    balancer.rebuild(targets)
    return balancer


def test_equal_weights_rotate():
    targets = [T("a"), T("b"), T("c")]
    rr = balanced(RoundRobin(), targets)
    assert names(rr.pick(targets) for _ in range(6)) == ["a", "b", "c", "a", "b", "c"]


def test_weights_interleave_smoothly():
    """3:1 gives a a b a (NGINX's smooth weighted round robin), never a burst of three."""
    targets = [T("a", 3), T("b", 1)]
    rr = balanced(RoundRobin(), targets)
    assert names(rr.pick(targets) for _ in range(8)) == ["a", "a", "b", "a"] * 2


def test_weights_are_honoured_over_a_cycle():
    targets = [T("a", 5), T("b", 2), T("c", 1)]
    rr = balanced(RoundRobin(), targets)
    assert Counter(names(rr.pick(targets) for _ in range(80))) == {"a": 50, "b": 20, "c": 10}


def test_round_robin_over_the_remaining_candidates():
    """A target leaving the candidates (unhealthy) does not disturb the others' interleaving."""
    a, b, c = T("a", 2), T("b", 1), T("c", 1)
    rr = balanced(RoundRobin(), [a, b, c])
    assert names(rr.pick([a, c]) for _ in range(6)) == ["a", "c", "a", "a", "c", "a"]


def test_least_connections_prefers_the_least_loaded_per_weight():
    a, b, c = T("a", 1, in_flight=3), T("b", 2, in_flight=4), T("c", 1, in_flight=1)
    lc = balanced(LeastConnections(), [a, b, c])
    assert lc.pick([a, b, c]) is c
    c.in_flight = 3
    assert lc.pick([a, b, c]) is b  # 4/2 < 3/1


def test_least_connections_breaks_ties_by_weight():
    """With nothing in flight (sequential traffic) the weights still hold: 3:1."""
    a, b = T("a", 3), T("b", 1)
    lc = balanced(LeastConnections(), [a, b])
    assert names(lc.pick([a, b]) for _ in range(8)) == ["a", "a", "b", "a"] * 2


def test_weighted_random_follows_the_weights():
    a, b = T("a", 3), T("b", 1)
    wr = balanced(WeightedRandom(Random(7)), [a, b])
    counts = Counter(names(wr.pick([a, b]) for _ in range(4000)))
    assert 2800 < counts["a"] < 3200


def test_uniform_random_is_uniform_and_deterministic_with_a_seed():
    targets = [T("a"), T("b")]
    one, two = balanced(WeightedRandom(Random(3)), targets), balanced(WeightedRandom(Random(3)), targets)
    first = names(one.pick(targets) for _ in range(20))
    again = names(two.pick(targets) for _ in range(20))
    assert first == again and set(first) == {"a", "b"}


def test_least_response_time_prefers_the_faster_target():
    clock = Clock()
    fast, slow = T("fast"), T("slow")
    fast.latency.add(0.010, 0)
    slow.latency.add(0.200, 0)
    lrt = balanced(LeastResponseTime(Random(1), clock), [fast, slow])
    # Two candidates: both are always the two choices, the cheaper wins.
    assert names(lrt.pick([fast, slow]) for _ in range(10)) == ["fast"] * 10


def test_least_response_time_weighs_load():
    """A fast target with many requests in flight loses to a slower idle one."""
    clock = Clock()
    fast, slow = T("fast", in_flight=30), T("slow")
    fast.latency.add(0.010, 0)
    slow.latency.add(0.100, 0)
    lrt = balanced(LeastResponseTime(Random(1), clock), [fast, slow])
    assert lrt.pick([fast, slow]) is slow


def test_least_response_time_samples_two_of_many():
    """Power of two choices: the slowest of many targets is never picked (it always loses its pair)."""
    clock = Clock()
    targets = [T(f"t{i}") for i in range(5)]
    for i, t in enumerate(targets):
        t.latency.add(0.01 * (i + 1), 0)
    lrt = balanced(LeastResponseTime(Random(5), clock), targets)
    picks = Counter(names(lrt.pick(targets) for _ in range(500)))
    assert picks["t4"] == 0 and picks["t0"] > picks["t3"]


def test_latency_average_jumps_up_and_decays():
    """Peak-sensitive: a slow sample counts at once; without samples it fades."""
    avg = LatencyAverage()
    avg.add(0.010, 0)
    avg.add(0.500, 1)
    assert avg.current(1) == pytest.approx(0.5)
    assert avg.current(11) < 0.1  # 10 s later (decay 5 s)
    for t in range(2, 40):
        avg.add(0.010, t)
    assert avg.current(40) == pytest.approx(0.010, rel=0.2)


def request(headers=None, ip="10.0.0.1"):
    return ProxyRequest(method=b"GET", path="/", headers=Headers(headers or {}), client_ip=ip)


def test_consistent_hash_keys_on_header_cookie_or_address():
    targets = [T(f"t{i}") for i in range(8)]
    header = balanced(ConsistentHash(HashKeyConfig(source="header", name="X-User")), targets)
    picks = {header.pick(targets, request({b"X-User": [b"alice"]}, ip=f"10.0.0.{i}")).name for i in range(20)}
    assert len(picks) == 1  # the same user always lands on the same target, whatever its address
    cookie = balanced(ConsistentHash(HashKeyConfig(source="cookie", name="sid")), targets)
    one = cookie.pick(targets, request({b"Cookie": [b"a=1; sid=xyz"]}))
    assert all(cookie.pick(targets, request({b"Cookie": [b"sid=xyz"]}, ip=f"10.1.0.{i}")) is one for i in range(10))
    by_ip = balanced(ConsistentHash(HashKeyConfig()), targets)
    spread = Counter(by_ip.pick(targets, request(ip=f"10.2.{i // 250}.{i % 250}")).name for i in range(2000))
    assert len(spread) == 8 and min(spread.values()) > 150  # evenly spread


def test_consistent_hash_falls_back_to_the_client_address():
    targets = [T(f"t{i}") for i in range(8)]
    by_header = balanced(ConsistentHash(HashKeyConfig(source="header", name="X-User")), targets)
    by_ip = balanced(ConsistentHash(HashKeyConfig()), targets)
    for i in range(20):
        assert by_header.pick(targets, request(ip=f"10.9.0.{i}")) is by_ip.pick(targets, request(ip=f"10.9.0.{i}"))


def test_consistent_hash_skips_unavailable_targets_and_gives_keys_back():
    targets = [T(f"t{i}") for i in range(5)]
    ch = balanced(ConsistentHash(HashKeyConfig()), targets)
    home = {ip: ch.pick(targets, request(ip=ip)) for ip in (f"10.3.0.{i}" for i in range(200))}
    down = targets[2]
    rest = [t for t in targets if t is not down]
    for ip, owner in home.items():
        chosen = ch.pick(rest, request(ip=ip))
        assert chosen is not down
        if owner is not down:
            assert chosen is owner  # only the unavailable target's keys move
    assert all(ch.pick(targets, request(ip=ip)) is owner for ip, owner in home.items())


@pytest.mark.parametrize(
    "headers, expected",
    [([b"sid=1"], b"1"), ([b"a=2; sid=\"3\"; b=4"], b"3"), ([b"a=1", b"sid=5"], b"5"), ([b"sidx=1"], None), ([], None)],
)
def test_cookie_value(headers, expected):
    assert cookie_value(headers, "sid") == expected
