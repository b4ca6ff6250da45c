"""
The rate_limit stage in a whole gateway (memory backend, `Clock`): 429 with
the JSON body and Retry-After, the IETF and X-RateLimit headers on every
answer of a limited route, the keys (ip through trusted_proxies, consumer,
header, route, combinations), several limits, and on_backend_error.
"""

from __future__ import annotations

import json
from typing import Optional

import pytest
from twisted.internet.defer import fail
from twisted.web.resource import Resource

from twistgate.config import load_text
from twistgate.policies import Policy
from tests.policy_helpers import add_policy, reset_sections
from twistgate.config._node import Node
from twistgate.errors import RateLimited, ServiceUnavailable
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.plugins import hookimpl
from twistgate.policies.ratelimit.config import LimitConfig, RateLimitConfig
from twistgate.policies.ratelimit.redis_backend import BackendUnavailable
from twistgate.policies.ratelimit.stage import STATE_KEY, RateLimitStage
from twistgate.config.model import Rate
from twistgate.testing import GatewayHarness, result_of


class Hello(Resource):
    isLeaf = True

    def render(self, request):
        request.setHeader(b"Content-Type", b"text/plain")
        return b"hello"


def gateway(rate_limit: str, *, top: str = "", clock=None):
    text = f"""
listeners: [{{name: p, endpoint: "tcp:0"}}]
upstreams: {{app: {{targets: [{{url: "http://app:80"}}]}}}}
{top}
routes:
  - name: api
    path: /api/*
    upstream: app
    rate_limit: {rate_limit}
  - name: free
    path: /free
    upstream: app
"""
    return GatewayHarness(load_text(text, "gw.yaml"), Hello(), clock=clock)


def get(gw, path="/api/x", **headers):
    response = gw.request("GET", "http://gw" + path, headers=headers or None)
    body = gw.content(response)
    return response, body


def h(response, name: str) -> Optional[str]:
    values = response.headers.getRawHeaders(name)
    return ", ".join(values) if values else None


def codes(gw, n, path="/api/x", **headers):
    return [get(gw, path, **headers)[0].code for _ in range(n)]


def test_limit_exceeded_is_a_429_with_the_contract_body_and_retry_after():
    gw = gateway("{rate: 3/min, algorithm: fixed_window}")
    assert codes(gw, 3) == [200, 200, 200]
    response, body = get(gw)
    assert response.code == 429
    error = json.loads(body)
    assert error["error"] == "rate_limited" and error["request_id"] == h(response, "X-Request-Id")
    assert h(response, "Retry-After") == "60"
    assert h(response, "RateLimit") == '"3-per-60s";r=0;t=60'
    assert h(response, "RateLimit-Policy") == '"3-per-60s";q=3;w=60'
    assert (h(response, "X-RateLimit-Limit"), h(response, "X-RateLimit-Remaining"), h(response, "X-RateLimit-Reset")) == (
        "3",
        "0",
        "60",
    )
    gw.clock.advance(60)
    assert codes(gw, 1) == [200]


def test_every_response_of_a_limited_route_carries_the_headers():
    gw = gateway("{rate: 10/s, burst: 20}")
    gw.clock.advance(0.25)
    response, _ = get(gw)
    assert response.code == 200
    assert h(response, "RateLimit-Policy") == '"10-per-1s";q=20;w=2'
    assert h(response, "RateLimit") == '"10-per-1s";r=19;t=1'
    assert h(response, "X-RateLimit-Limit") == "20"
    assert h(response, "X-RateLimit-Remaining") == "19"
    response, _ = get(gw, "/free")
    assert h(response, "RateLimit") is None and h(response, "X-RateLimit-Limit") is None


def test_retry_after_is_rounded_up_and_the_limit_is_open_again_then():
    """Token bucket 1 per 90 s: after 30 s the wait is 60 s; at 59.9 still refused, at 60 allowed."""
    gw = gateway("{rate: 1/90s}")
    assert codes(gw, 1) == [200]
    gw.clock.advance(30.5)
    response, _ = get(gw)
    assert response.code == 429 and h(response, "Retry-After") == "60"  # 59.5 s rounded up
    gw.clock.advance(59.4)
    assert codes(gw, 1) == [429]
    gw.clock.advance(0.1)
    assert codes(gw, 1) == [200]


def test_several_limits_on_one_route():
    """2/s and 5/min: the short one refuses bursts, the long one the total."""
    gw = gateway("[{rate: 2/s, algorithm: fixed_window}, {rate: 5/min, algorithm: sliding_window}]")
    assert codes(gw, 3) == [200, 200, 429]
    gw.clock.advance(1)
    assert codes(gw, 3) == [200, 200, 429]
    gw.clock.advance(1)
    response, _ = get(gw)
    assert response.code == 200
    assert h(response, "RateLimit") == '"2-per-1s";r=1;t=1, "5-per-60s";r=0;t=60'
    assert h(response, "RateLimit-Policy") == '"2-per-1s";q=2;w=1, "5-per-60s";q=5;w=60'
    assert h(response, "X-RateLimit-Limit") == "5"  # the one closest to running out
    response, _ = get(gw)
    assert response.code == 429 and h(response, "Retry-After") == "58"


def test_ip_key_follows_trusted_proxies():
    """Behind a trusted proxy each X-Forwarded-For client has its own limit; untrusted peers cannot spoof."""
    gw = gateway("{rate: 1/min, key: ip}", top="trusted_proxies: [127.0.0.1]")
    assert codes(gw, 2, **{"X-Forwarded-For": "203.0.113.1"}) == [200, 429]
    assert codes(gw, 2, **{"X-Forwarded-For": "203.0.113.2"}) == [200, 429]
    untrusted = gateway("{rate: 1/min, key: ip}")
    assert codes(untrusted, 1, **{"X-Forwarded-For": "203.0.113.1"}) == [200]
    assert codes(untrusted, 1, **{"X-Forwarded-For": "203.0.113.2"}) == [429]


def test_header_key_and_missing_header_falls_back_to_the_address():
    gw = gateway("{rate: 1/min, key: 'header:X-Tenant'}", top="trusted_proxies: [127.0.0.1]")
    assert codes(gw, 2, **{"X-Tenant": "a"}) == [200, 429]
    assert codes(gw, 1, **{"X-Tenant": "b"}) == [200]
    # No header: limited per client address, not one bucket for every header-less client.
    assert codes(gw, 2, **{"X-Forwarded-For": "198.51.100.1"}) == [200, 429]
    assert codes(gw, 1, **{"X-Forwarded-For": "198.51.100.2"}) == [200]


def test_route_key_is_shared_by_everyone_and_combinations_split_it():
    gw = gateway("{rate: 2/min, key: route}", top="trusted_proxies: [127.0.0.1]")
    assert codes(gw, 1, **{"X-Forwarded-For": "192.0.2.1"}) == [200]
    assert codes(gw, 2, **{"X-Forwarded-For": "192.0.2.2"}) == [200, 429]
    combo = gateway("{rate: 1/min, key: [ip, 'header:X-Tenant']}", top="trusted_proxies: [127.0.0.1]")
    assert codes(combo, 2, **{"X-Forwarded-For": "192.0.2.1", "X-Tenant": "a"}) == [200, 429]
    assert codes(combo, 1, **{"X-Forwarded-For": "192.0.2.1", "X-Tenant": "b"}) == [200]
    assert codes(combo, 1, **{"X-Forwarded-For": "192.0.2.2", "X-Tenant": "a"}) == [200]


class Who:
    """A stand-in authentication stage: sets the consumer from X-Who."""

    @hookimpl
    def on_request(self, request):
        who = request.headers.getRawHeaders(b"X-Who")
        request.consumer = who[0].decode() if who else None


@pytest.fixture
def fake_auth(monkeypatch):
    """`who: true` on a route runs `Who` where authentication runs."""
    add_policy(monkeypatch, Policy(name="who", key="who", parse=Node.boolean, build=lambda route, services: Who()), before="auth")
    yield
    reset_sections()


def test_consumer_key_uses_the_identity_set_by_authentication(fake_auth):
    text = """
listeners: [{name: p, endpoint: "tcp:0"}]
trusted_proxies: [127.0.0.1]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes:
  - {name: api, path: /api/*, upstream: app, who: true, rate_limit: {rate: 1/min, key: consumer}}
"""
    gw = GatewayHarness(load_text(text), Hello())
    same_ip = {"X-Forwarded-For": "192.0.2.9"}
    assert codes(gw, 2, **same_ip, **{"X-Who": "alice"}) == [200, 429]
    assert codes(gw, 1, **same_ip, **{"X-Who": "bob"}) == [200]  # same address, other consumer
    # Anonymous requests are limited per address (never one bucket for all anonymous).
    assert codes(gw, 2, **{"X-Forwarded-For": "192.0.2.10"}) == [200, 429]
    assert codes(gw, 1, **{"X-Forwarded-For": "192.0.2.11"}) == [200]


def test_other_gateway_errors_on_a_limited_route_carry_the_headers():
    """A 502 (no upstream) after the limit allowed the request still tells the client its quota."""
    text = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
routes:
  - {name: api, path: /api/*, upstream: app, rate_limit: {rate: 5/min, algorithm: fixed_window}}
"""
    gw = GatewayHarness(load_text(text), Hello(), agents={"app": _FailingAgent()})
    response, body = get(gw)
    assert response.code == 502
    assert h(response, "RateLimit") == '"5-per-60s";r=4;t=60'
    assert h(response, "X-RateLimit-Remaining") == "4"


class _FailingAgent:
    def request(self, *args, **kwargs):
        return fail(ConnectionRefusedError())


# -- on_backend_error, with a backend that cannot decide ----------------------------


class DownBackend:
    def __init__(self):
        self.calls = 0

    def decide(self, keys, limits):
        self.calls += 1
        return fail(BackendUnavailable("not connected"))


def stage_with(backend, on_backend_error):
    config = RateLimitConfig(limits=(LimitConfig(rate=Rate(5, 1.0)),))
    return RateLimitStage(config, "api", backend, on_backend_error=on_backend_error)


def request() -> ProxyRequest:
    return ProxyRequest(method=b"GET", path="/api/x", client_ip="192.0.2.1")


def test_backend_down_with_allow_lets_requests_through_without_headers():
    backend = DownBackend()
    rl = stage_with(backend, "allow")
    req = request()
    assert result_of(rl.on_request(req)) is None
    assert STATE_KEY not in req.state and backend.calls == 1
    response = ProxyResponse(status=200)
    rl.on_response(req, response)
    assert not response.headers.hasHeader(b"RateLimit")


def test_backend_down_with_deny_answers_503_not_429():
    rl = stage_with(DownBackend(), "deny")
    with pytest.raises(ServiceUnavailable) as error:
        result_of(rl.on_request(request()))
    assert error.value.code == "rate_limit_unavailable"
    assert dict(error.value.headers)[b"Retry-After"] == b"1"


def test_a_synchronous_backend_costs_no_deferred():
    """The memory backend decides inline: on_request returns a value, not a Deferred."""
    from twisted.internet.task import Clock

    from twistgate.policies.ratelimit.memory import MemoryBackend

    rl = stage_with(MemoryBackend(Clock()), "allow")
    req = request()
    assert rl.on_request(req) is None
    assert req.state[STATE_KEY].allowed
    for _ in range(4):
        rl.on_request(request())
    with pytest.raises(RateLimited):
        rl.on_request(request())


def test_keys_are_distinct_per_route_limit_and_meaning():
    """Changing a limit's rate gives new keys, so state kept under the old meaning is never misread."""
    a = stage_with(None, "allow")
    config = RateLimitConfig(limits=(LimitConfig(rate=Rate(6, 1.0)),))
    b = RateLimitStage(config, "api", None)
    c = RateLimitStage(config, "other", None)
    keys = {a.keys(request())[0], b.keys(request())[0], c.keys(request())[0]}
    assert len(keys) == 3
    assert all(k.endswith("ip=192.0.2.1") for k in keys)


def test_long_header_values_are_hashed_into_bounded_keys():
    config = RateLimitConfig(limits=(LimitConfig(rate=Rate(6, 1.0), key=("header:x-api-key",)),))
    rl = RateLimitStage(config, "api", None)
    req = request()
    req.headers.setRawHeaders(b"X-Api-Key", [b"k" * 5000])
    key = rl.keys(req)[0]
    assert len(key) < 100
    other = request()
    other.headers.setRawHeaders(b"X-Api-Key", [b"k" * 4999 + b"j"])
    assert rl.keys(other)[0] != key



def test_consumer_keys_are_remembered_per_consumer_within_a_bound(monkeypatch):
    """A consumer's key is made once and is the key it always had; anonymous requests still go by address."""
    from twistgate.policies.ratelimit import stage

    monkeypatch.setattr(stage, "_CONSUMERS_KEPT", 3)
    config = RateLimitConfig(limits=(LimitConfig(rate=Rate(6, 1.0), key=("consumer",)),))
    rl = RateLimitStage(config, "api", None)
    policy = rl.policies[0]

    def keyed(consumer, client_ip="192.0.2.1"):
        req = ProxyRequest(method=b"GET", path="/api/x", client_ip=client_ip)
        req.consumer = consumer
        return rl.keys(req)[0]

    alice = keyed("alice")
    assert alice.endswith(":consumer=alice")
    assert keyed("alice", client_ip="192.0.2.2") == alice  # the consumer, not the address
    assert keyed("x" * 300) == keyed("x" * 300) != keyed("x" * 299 + "y")  # long names hashed, still distinct
    assert keyed(None).endswith(":ip=192.0.2.1") and keyed(None, "192.0.2.7").endswith(":ip=192.0.2.7")
    assert keyed("1") == keyed(1)  # a name that is not text keys as its str(), unremembered
    for index in range(10):
        assert keyed(f"c{index}").endswith(f":consumer=c{index}")
        assert len(policy.by_consumer) <= 3
    assert keyed("alice") == alice  # forgotten when the table was cleared, made again the same


class LaterBackend:
    """Decides like the memory backend, but answers through a Deferred fired by the test (like Redis)."""

    def __init__(self, clock):
        from twistgate.policies.ratelimit.memory import MemoryBackend

        self.memory = MemoryBackend(clock)
        self.waiting = []

    def decide(self, keys, limits):
        from twisted.internet.defer import Deferred

        d = Deferred()
        self.waiting.append((d, self.memory.decide(keys, limits)))
        return d

    def answer_all(self):
        waiting, self.waiting = self.waiting, []
        for d, decision in waiting:
            d.callback(decision)


def test_an_asynchronous_backend_holds_the_request_until_it_decides():
    """The request waits for the (Redis-like) decision, then is forwarded or refused with the headers."""
    from twisted.internet.task import Clock

    clock = Clock()
    gw = gateway("{rate: 1/min, algorithm: fixed_window}", clock=clock)
    later = LaterBackend(clock)
    # Swap the route's backend for the asynchronous one.
    for call in gw.generation.plugins.for_route("api")._on_request:
        owner = getattr(call.function, "__self__", None)
        if isinstance(owner, RateLimitStage):
            owner.backend = later
    first = gw.send("GET", "http://gw/api/x")
    arrived = []
    first.addCallback(lambda response: arrived.append(response) or response)
    assert arrived == [] and len(later.waiting) == 1  # held: nothing forwarded yet
    later.answer_all()
    gw.flush()
    response = result_of(first)
    assert response.code == 200 and h(response, "RateLimit") == '"1-per-60s";r=0;t=60'
    second = gw.send("GET", "http://gw/api/x")
    later.answer_all()
    gw.flush()
    response = result_of(second)
    assert response.code == 429 and h(response, "Retry-After") == "60"


def test_a_one_limit_route_writes_the_same_headers_as_the_general_way():
    """`OneLimitHeaders` (bytes made at load) gives what `decision_headers` gives, in the same order."""
    from twistgate.policies.ratelimit.algorithms import FIXED_WINDOW, TOKEN_BUCKET, Decision, Limit, Outcome
    from twistgate.policies.ratelimit.headers import OneLimitHeaders, decision_headers, policy_header, sf_string

    cases = [("5-per-60s", Limit(FIXED_WINDOW, 5, 60_000_000, 5)), ('we\\ird "name"', Limit(TOKEN_BUCKET, 10, 1_000_000, 30))]
    for name, limit in cases:
        names = (sf_string(name).encode("ascii"),)
        policy = policy_header([name], [limit])
        one = OneLimitHeaders(names[0], limit, policy)
        for outcome in [Outcome(True, 4, 59_000_001, 0), Outcome(False, 0, 0, 5), Outcome(True, 29, 1, 0)]:
            decision = Decision(outcome.allowed, (outcome,))
            raw = {b"Content-Type": [b"text/plain"]}
            one.write(raw, decision)
            general = decision_headers(names, (limit,), policy, decision)
            assert list(raw.items())[1:] == [(header, [value]) for header, value in general]
