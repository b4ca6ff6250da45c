"""The resilience keys of upstreams and routes: defaults, values, and errors with line and key path."""

from __future__ import annotations

from twistgate.upstream.settings import (
    BreakerConfig,
    DiscoveryConfig,
    HashKeyConfig,
    HealthCheckConfig,
    OutlierConfig,
    RetryConfig,
)
from tests.config_helpers import config_loader

HEAD = 'listeners: [{name: a, endpoint: "tcp:1"}]\n'


load, issues = config_loader(HEAD)


def test_contract_example_and_defaults():
    config = load(
        """
        upstreams:
          users:
            targets: [{url: "http://127.0.0.1:5001"}]
            timeouts: {connect: 2s, read: 30s}
            health_check: {path: /health, interval: 5s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 3}
            circuit_breaker: {failure_threshold: 5, recovery_timeout: 30s, half_open_requests: 1, success_threshold: 1}
            retry: {attempts: 3, backoff: 50ms, max_backoff: 1s, on: [connect_failure, 502, 503, 504], budget: 20%}
            outlier_detection: {}
            discovery: {}
        routes:
          - {name: r, path: /, upstream: users}
        """
    )
    policies = config.upstreams["users"].policies
    assert policies["health_check"] == HealthCheckConfig(path="/health", interval=5, timeout=1)
    assert policies["circuit_breaker"] == BreakerConfig()
    assert policies["retry"] == RetryConfig(on=frozenset({"connect_failure"}))
    assert policies["retry"].statuses == {502, 503, 504} and policies["retry"].budget == 0.2
    assert policies["outlier_detection"] == OutlierConfig()
    assert policies["discovery"] == DiscoveryConfig()
    assert policies["health_check"].location.line == 6
    assert config.upstreams["users"].timeouts.total is None


def test_every_value():
    config = load(
        """
        upstreams:
          u:
            targets:
              - {url: "http://h:1"}
              - {srv: _api._tcp.users.default.svc.cluster.local, scheme: https, weight: 2}
            balance: consistent_hash
            hash_key: "cookie:session"
            timeouts: {connect: 1s, read: 2s, total: 9s}
            health_check: {path: /h, interval: 2s, jitter: 0s, expected_statuses: [200, "300-302"]}
            outlier_detection: {consecutive_failures: 2, statuses: [500], base_ejection_time: 1s, max_ejection_time: 4s, max_ejected: 33%}
            retry: {on: [reset, timeout, 5xx], budget_window: 5s, budget_min_per_second: 0, replay_buffer: 1MiB}
            discovery: {interval: 10s, timeout: 1s, nameservers: ["127.0.0.1:8600", "[::1]"], family: ipv6}
        routes:
          - name: r
            path: /
            upstream: u
            retry: {attempts: 5, non_idempotent: true, on: [503]}
            timeouts: {read: 100ms}
        """
    )
    u = config.upstreams["u"]
    srv = u.targets[1]
    assert (srv.srv, srv.host, srv.scheme, srv.port, srv.weight) == (True, "_api._tcp.users.default.svc.cluster.local", "https", 0, 2)
    assert u.timeouts.total == 9 and u.balance == "consistent_hash"
    p = u.policies
    assert p["hash_key"] == HashKeyConfig(source="cookie", name="session")
    assert p["health_check"].expects(301) and not p["health_check"].expects(204) and p["health_check"].effective_jitter == 0
    assert p["outlier_detection"].max_ejected == 0.33 and p["outlier_detection"].statuses == {500}
    assert p["retry"].on == {"reset", "timeout"} and p["retry"].statuses == set(range(500, 600))
    assert p["retry"].replay_buffer == 1024 * 1024
    assert p["discovery"].nameservers == (("127.0.0.1", 8600), ("::1", 53))
    route = config.routes[0].policies
    assert route["retry"].attempts == 5 and route["retry"].non_idempotent and route["retry"].statuses == {503}
    assert route["timeouts"].read == 0.1 and route["timeouts"].connect is None


def test_errors_point_at_the_value():
    found = issues(
        """
        upstreams:
          u:
            targets:
              - {url: "http://h:1"}
              - {srv: "users.example"}
              - {srv: _a._tcp.x, url: "http://x"}
              - {url: "http://y", scheme: https}
            health_check: {interval: 1s, timeout: 2s, expected_statuses: ["299-200", 700]}
            circuit_breaker: {failure_threshold: 0, recovery_timeout: 30}
            retry: {on: [connect_faliure, 99], budget: 120%, backoff: 2s, max_backoff: 1s}
            outlier_detection: {max_ejected: 0.5}
            discovery: {nameservers: [dns.google], family: v4}
            hash_key: "query:x"
        """
    )
    paths = [(line, path) for line, path, _ in found]
    assert (6, "upstreams.u.targets[1].srv") in paths
    assert (7, "upstreams.u.targets[2].url") in paths
    assert (8, "upstreams.u.targets[3].scheme") in paths
    assert (9, "upstreams.u.health_check.path") in paths  # required
    assert (9, "upstreams.u.health_check.timeout") in paths  # not shorter than the interval
    assert (9, "upstreams.u.health_check.expected_statuses[0]") in paths
    assert (9, "upstreams.u.health_check.expected_statuses[1]") in paths
    assert (10, "upstreams.u.circuit_breaker.failure_threshold") in paths
    assert (10, "upstreams.u.circuit_breaker.recovery_timeout") in paths
    assert (11, "upstreams.u.retry.on[0]") in paths
    assert (11, "upstreams.u.retry.on[1]") in paths
    assert (11, "upstreams.u.retry.budget") in paths
    assert (11, "upstreams.u.retry.max_backoff") in paths
    assert (12, "upstreams.u.outlier_detection.max_ejected") in paths
    assert (13, "upstreams.u.discovery.nameservers[0]") in paths
    assert (13, "upstreams.u.discovery.family") in paths
    assert (14, "upstreams.u.hash_key") in paths
    messages = dict(((line, path), message) for line, path, message in found)
    assert "did you mean 'connect_failure'" in messages[(11, "upstreams.u.retry.on[0]")]
    assert messages[(11, "upstreams.u.retry.budget")] == "expected a percentage from 0% to 100% like 20%, got '120%'"


def test_route_sections_refuse_upstream_only_keys():
    found = issues(
        """
        upstreams:
          u: {targets: [{url: "http://h"}]}
        routes:
          - {name: r, path: /, upstream: u, retry: {budget: 10%}, timeouts: {pool: 1s}}
        """
    )
    assert [(p, m.split(";")[0]) for _, p, m in found] == [
        ("routes[0].retry.budget", "unknown key 'budget'"),
        ("routes[0].timeouts.pool", "unknown key 'pool'"),
    ]


def test_hash_key_needs_consistent_hash():
    found = issues('upstreams:\n  u: {targets: [{url: "http://h"}], balance: ip_hash, hash_key: "header:X-User"}\n')
    assert found == [
        (3, "upstreams.u.hash_key", "'hash_key' is only used by balance: consistent_hash (this upstream uses ip_hash)")
    ]


def test_srv_names_and_duplicates():
    config = load('upstreams:\n  u: {targets: [{srv: "_http._tcp.Users.Service.Consul."}]}\n')
    assert config.upstreams["u"].targets[0].host == "_http._tcp.users.service.consul"
    found = issues('upstreams:\n  u: {targets: [{srv: "_http._tcp.a.b"}, {srv: "_http._tcp.A.B"}]}\n')
    assert found and "duplicate target" in found[0][2]


def test_the_examples_in_the_docs_load():
    """Every YAML example in docs/resilience.md is a valid configuration."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "resilience.md"
    blocks = re.findall(r"```yaml\n(.*?)```", docs.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        config = load(block)
        assert config.upstreams
