"""Tests for the upstreams section: targets, balance, timeouts and pool."""


import pytest

from twistgate.config import (
    Location,
    PoolConfig,
    TargetConfig,
    UpstreamConfig,
    UpstreamTimeoutsConfig,
)
from tests.config_helpers import config_loader

HEAD = 'listeners: [{name: a, endpoint: "tcp:1"}]\n'


load, issues = config_loader(HEAD)


def test_upstream_full():
    """Every key is read into UpstreamConfig, with the name's line as location."""
    config = load(
        """
        upstreams:
          users:
            targets:
              - url: http://127.0.0.1:5001
                weight: 2
              - url: https://Users.Internal
            balance: round_robin
            timeouts: {connect: 2s, read: 30s}
            pool: {max_idle_per_target: 8, idle_timeout: 90s}
        """
    )
    assert config.upstreams == {
        "users": UpstreamConfig(
            name="users",
            targets=(
                TargetConfig(url="http://127.0.0.1:5001", scheme="http", host="127.0.0.1", port=5001, weight=2),
                TargetConfig(url="https://Users.Internal", scheme="https", host="users.internal", port=443),
            ),
            balance="round_robin",
            timeouts=UpstreamTimeoutsConfig(connect=2.0, read=30.0),
            pool=PoolConfig(max_idle_per_target=8, idle_timeout=90.0),
            location=Location(file="gw.yaml", line=3, path="upstreams.users"),
        )
    }


def test_upstream_defaults():
    """Only targets is required; balance, timeouts and pool default from the model."""
    upstream = load("upstreams:\n  u: {targets: [{url: 'http://h'}]}\n").upstreams["u"]
    assert upstream.targets == (TargetConfig(url="http://h", scheme="http", host="h", port=80),)
    assert upstream.balance == "round_robin"
    assert upstream.timeouts == UpstreamTimeoutsConfig()
    assert upstream.pool == PoolConfig()


@pytest.mark.parametrize(
    "url, scheme, host, port",
    [
        ("http://h", "http", "h", 80),
        ("https://h/", "https", "h", 443),
        ("HTTP://H:8080", "http", "h", 8080),
        ("http://[::1]:9000", "http", "::1", 9000),
    ],
)
def test_target_url_forms(url, scheme, host, port):
    """Scheme and host are normalised, and the port defaults by scheme."""
    target = load(f"upstreams:\n  u: {{targets: [{{url: '{url}'}}]}}\n").upstreams["u"].targets[0]
    assert (target.url, target.scheme, target.host, target.port) == (url, scheme, host, port)


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://h", "must start with http:// or https://"),
        ("127.0.0.1:5001", "must start with http:// or https://"),
        ("http://", "needs a host"),
        ("http://h:99999", "invalid target url"),
        ("http://h:0", "port from 1 to 65535"),
        ("http://u:p@h", "must not contain credentials"),
        ("http://h/api", "must not have a path ('/api')"),
        ("http://h/?a=1", "must not have a query"),
        ("http://h#x", "must not have a query or fragment"),
    ],
)
def test_target_url_errors(url, message):
    """Each rule on target URLs gives its own message at targets[i].url."""
    found = issues(f"upstreams:\n  u:\n    targets:\n      - url: '{url}'\n")
    assert len(found) == 1
    assert found[0][:2] == (5, "upstreams.u.targets[0].url")
    assert message in found[0][2]


def test_targets_required_and_non_empty():
    """An upstream needs at least one target."""
    assert issues("upstreams:\n  u: {balance: round_robin}\n") == [
        (3, "upstreams.u.targets", "required key 'targets' is missing")
    ]
    assert issues("upstreams:\n  u: {targets: []}\n") == [(3, "upstreams.u.targets", "must not be empty")]


def test_target_weight_and_duplicates():
    """Weights are ints >= 1; the same address twice is refused."""
    found = issues(
        """
        upstreams:
          u:
            targets:
              - {url: "http://h:1", weight: 0}
              - {url: "http://h:2", weight: two}
              - {url: "http://h:3"}
              - {url: "http://H:3/"}
        """
    )
    assert found == [
        (5, "upstreams.u.targets[0].weight", "must be at least 1, got 0"),
        (6, "upstreams.u.targets[1].weight", "expected an integer, got string 'two'"),
        (
            8,
            "upstreams.u.targets[3]",
            "duplicate target 'http://H:3/' (first on line 7); raise its weight instead",
        ),
    ]


def test_balance_values():
    """Every contract value works; others are unknown, with a suggestion."""
    found = issues(
        """
        upstreams:
          a: {targets: [{url: "http://h"}], balance: least_connections}
          b: {targets: [{url: "http://h"}], balance: round_robbin}
        """
    )
    assert found == [
        (
            4,
            "upstreams.b.balance",
            "unknown value 'round_robbin'; expected one of consistent_hash, ip_hash, "
            "least_connections, least_response_time, random, round_robin; did you mean 'round_robin'?",
        ),
    ]


@pytest.mark.parametrize(
    "key", ["round_robin", "least_connections", "ip_hash", "consistent_hash", "random", "least_response_time"]
)
def test_every_contract_balance_is_accepted(key):
    """Every balance value named by the contract is implemented (twistgate.upstream.balancer)."""
    assert load(f"upstreams:\n  u: {{targets: [{{url: 'http://h'}}], balance: {key}}}\n").upstreams["u"].balance == key


def test_timeouts_and_pool_errors():
    """Timeouts are positive durations; pool keys are checked."""
    found = issues(
        """
        upstreams:
          u:
            targets: [{url: "http://h"}]
            timeouts: {connect: 0s, read: [1], send: 1s}
            pool: {max_idle_per_target: 0, idle_timeout: 10}
        """
    )
    assert found == [
        (5, "upstreams.u.timeouts.send", "unknown key 'send'"),
        (5, "upstreams.u.timeouts.connect", "must be longer than zero"),
        (5, "upstreams.u.timeouts.read", "expected a duration like 30s, got list"),
        (6, "upstreams.u.pool.max_idle_per_target", "must be at least 1, got 0"),
        (
            6,
            "upstreams.u.pool.idle_timeout",
            "a duration needs a unit: write 10s (or 10ms); units are ms, s, m, h and d",
        ),
    ]


def test_upstreams_must_be_a_mapping():
    """upstreams is a mapping of name to upstream."""
    assert issues("upstreams: [a]\n") == [(2, "upstreams", "expected a mapping, got list")]


def test_pool_idle_timeout_defaults_below_common_upstream_keep_alive_timeouts():
    """Issue 18: 4 s, below Node's, uvicorn's, gunicorn's and Apache's 5 s, so the gateway closes idle connections first."""
    from twistgate.engine.upstream_client import pooled_client_factory
    from twisted.internet.task import Clock

    from twistgate.config import load_text

    config = load_text("listeners: [{name: p, endpoint: 'tcp:0'}]\nupstreams: {u: {targets: [{url: 'http://a:1'}]}}\n")
    assert config.upstreams["u"].pool.idle_timeout == 4.0
    client = pooled_client_factory(Clock())(config.upstreams["u"], None)
    assert client.pool.idle_timeout == 4.0
    tuned = load_text("listeners: [{name: p, endpoint: 'tcp:0'}]\nupstreams: {u: {targets: [{url: 'http://a:1'}], pool: {idle_timeout: 1500ms}}}\n")
    assert pooled_client_factory(Clock())(tuned.upstreams["u"], None).pool.idle_timeout == 1.5
