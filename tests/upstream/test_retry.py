"""Retry rules and the backoff schedule (twistgate.upstream.retry)."""

from random import Random

import attrs
from twistgate.headers import Headers

from twistgate.upstream.retry import IDEMPOTENT_METHODS, backoff, call_policy, retries_on, safe_to_repeat
from twistgate.upstream.settings import RetryConfig

from tests.upstream.fakes import upstream_config


class Highest(Random):
    """Full jitter's upper bound every time: the schedule's ceiling."""

    def uniform(self, a, b):
        return b


def test_backoff_doubles_up_to_the_cap():
    retry = RetryConfig(backoff=0.05, max_backoff=0.3)
    assert [backoff(retry, n, Highest()) for n in range(1, 6)] == [0.05, 0.1, 0.2, 0.3, 0.3]


def test_backoff_is_full_jitter():
    retry = RetryConfig(backoff=0.1, max_backoff=10)
    rng = Random(4)
    waits = [backoff(retry, 3, rng) for _ in range(2000)]
    assert 0 <= min(waits) < 0.02 and 0.38 < max(waits) <= 0.4
    assert abs(sum(waits) / len(waits) - 0.2) < 0.01  # uniform on [0, 0.4]


def test_only_non_idempotent_methods_need_permission():
    policy = call_policy(upstream_config("targets: [{url: 'http://a'}]\nretry: {}"), None)
    assert IDEMPOTENT_METHODS == {b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"}
    assert safe_to_repeat(policy, b"PUT", Headers())
    assert not safe_to_repeat(policy, b"POST", Headers())
    assert not safe_to_repeat(policy, b"PATCH", Headers())
    assert safe_to_repeat(policy, b"POST", Headers({b"Idempotency-Key": [b"k1"]}))
    assert safe_to_repeat(attrs.evolve(policy, non_idempotent=True), b"PATCH", Headers())


def test_conditions_and_statuses():
    retry = RetryConfig(on=frozenset({"connect_failure"}), statuses=frozenset({503}))
    assert retries_on(retry, "connect_failure", None)
    assert not retries_on(retry, "reset", None)
    assert retries_on(retry, None, 503) and not retries_on(retry, None, 502)


class Route:
    def __init__(self, **policies):
        self.policies = policies
        self.name = "r"


def test_route_overrides_are_applied_on_the_upstreams():
    from twistgate.upstream.settings import RouteRetryConfig, RouteTimeoutsConfig

    upstream = upstream_config(
        "targets: [{url: 'http://a'}]\ntimeouts: {connect: 2s, read: 10s}\nretry: {attempts: 4, backoff: 10ms, on: [reset]}"
    )
    plain = call_policy(upstream, None)
    assert (plain.connect, plain.read, plain.total, plain.attempts) == (2, 10, None, 4)
    route = Route(
        retry=RouteRetryConfig(attempts=2, non_idempotent=True),
        timeouts=RouteTimeoutsConfig(read=1, total=3),
    )
    custom = call_policy(upstream, route)
    assert (custom.connect, custom.read, custom.total, custom.attempts) == (2, 1, 3, 2)
    assert custom.retry.backoff == 0.01 and custom.retry.on == {"reset"} and custom.non_idempotent
    no_retry = call_policy(upstream, Route(retry=RouteRetryConfig(attempts=1)))
    assert no_retry.retry is None and no_retry.attempts == 1
    only_route = call_policy(upstream_config("targets: [{url: 'http://a'}]"), Route(retry=RouteRetryConfig()))
    assert only_route.attempts == 3  # the defaults, turned on by the route
