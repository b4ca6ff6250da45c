"""
The rate_limiting and rate_limit sections: accepted forms, defaults, and
errors with file, line and key path.
"""

from __future__ import annotations

import pytest

from twistgate.config import ConfigError, load_text
from twistgate.policies.ratelimit import MemoryBackend, build_backend
from twistgate.policies.ratelimit.algorithms import FIXED_WINDOW, SLIDING_WINDOW, TOKEN_BUCKET, Limit

BASE = """
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://app:80"}]}}
"""


def load(top: str = "", rate_limit: str = "{rate: 10/s}"):
    text = BASE + top + f"""
routes:
  - name: api
    path: /api/*
    upstream: app
    rate_limit: {rate_limit}
"""
    return load_text(text, "gw.yaml")


def errors(top: str = "", rate_limit: str = "{rate: 10/s}") -> str:
    with pytest.raises(ConfigError) as error:
        load(top, rate_limit)
    return str(error.value)


def test_contract_example_is_accepted_with_its_meaning():
    config = load(
        "rate_limiting: {backend: memory, on_backend_error: allow}\n",
        "{rate: 100/min, burst: 20, key: consumer, algorithm: token_bucket}",
    )
    (limit,) = config.routes[0].policies["rate_limit"].limits
    assert limit.key == ("consumer",)
    assert limit.limit() == Limit(TOKEN_BUCKET, 100, 60_000_000, 20)
    section = config.sections["rate_limiting"]
    assert section.redis is None and section.on_backend_error == "allow"


def test_defaults_token_bucket_keyed_by_ip_with_burst_equal_to_the_count():
    (limit,) = load().routes[0].policies["rate_limit"].limits
    assert limit.key == ("ip",) and limit.algorithm == "token_bucket"
    assert limit.limit() == Limit(TOKEN_BUCKET, 10, 1_000_000, 10)


def test_a_list_gives_several_limits_and_keys_combine():
    config = load(
        rate_limit="[{rate: 10/s, algorithm: fixed_window}, "
        "{rate: 1000/h, algorithm: sliding_window, key: [consumer, 'header:X-Tenant'], name: hourly}]"
    )
    first, second = config.routes[0].policies["rate_limit"].limits
    assert first.limit().algorithm == FIXED_WINDOW
    assert second.limit() == Limit(SLIDING_WINDOW, 1000, 3_600_000_000, 1000)
    assert second.key == ("consumer", "header:x-tenant")
    assert (first.policy_name(), second.policy_name()) == ("10-per-1s", "hourly")


def test_redis_url_parsed_and_password_kept_out_of_repr():
    config = load("rate_limiting: {backend: 'redis://:s3cret@10.0.0.5:6380/2', on_backend_error: deny, timeout: 50ms}\n")
    section = config.sections["rate_limiting"]
    address = section.redis
    assert (address.host, address.port, address.db, address.password) == ("10.0.0.5", 6380, 2, "s3cret")
    assert section.on_backend_error == "deny" and section.timeout == 0.05
    assert "s3cret" not in repr(section)
    backend = build_backend(section, clock=None)
    assert "s3cret" not in backend.where() and backend.where() == "redis://10.0.0.5:6380/2"


def test_no_section_means_a_memory_backend():
    config = load()
    assert "rate_limiting" not in config.sections
    assert isinstance(build_backend(None, clock=None), MemoryBackend)


@pytest.mark.parametrize(
    "top, rate_limit, where, message",
    [
        ("", "{rate: 10/m}", "gw.yaml:9: routes[0].rate_limit.rate", "write min for minutes"),
        ("", "{rate: 10/s, algorithm: leaky}", "routes[0].rate_limit.algorithm", "expected one of"),
        ("", "{rate: 10/s, algorithm: fixed_window, burst: 5}", "routes[0].rate_limit.burst", "token_bucket algorithm only"),
        ("", "{rate: 10/s, burst: 0}", "routes[0].rate_limit.burst", "at least 1"),
        ("", "{rate: 10/s, key: user}", "routes[0].rate_limit.key", "unknown key 'user'"),
        ("", "{rate: 10/s, key: 'header:'}", "routes[0].rate_limit.key", "header:NAME"),
        ("", "{rate: 10/s, key: [ip, ip]}", "routes[0].rate_limit.key[1]", "appears twice"),
        ("", "{burst: 5}", "routes[0].rate_limit.rate", "required key 'rate' is missing"),
        ("", "{rate: 10/s, brust: 5}", "routes[0].rate_limit.brust", "did you mean 'burst'"),
        ("", "[{rate: 10/s}, {rate: 10/s, key: consumer}]", "routes[0].rate_limit[1]", "both named '10-per-1s'"),
        ("", "[]", "routes[0].rate_limit", "must not be empty"),
        ("rate_limiting: {backend: memcached}\n", "{rate: 1/s}", "rate_limiting.backend", "unknown backend"),
        ("rate_limiting: {backend: 'rediss://h:1/0'}\n", "{rate: 1/s}", "rate_limiting.backend", "not supported"),
        ("rate_limiting: {backend: 'redis://h:1/x'}\n", "{rate: 1/s}", "rate_limiting.backend", "must be a number"),
        ("rate_limiting: {on_backend_error: block}\n", "{rate: 1/s}", "rate_limiting.on_backend_error", "allow, deny"),
        ("rate_limiting: {backend: 'redis://h:1/0', max_keys: 5}\n", "{rate: 1/s}", "rate_limiting.max_keys", "memory backend only"),
        ("rate_limiting: {timeout: 1s}\n", "{rate: 1/s}", "rate_limiting.timeout", "redis backend only"),
    ],
)
def test_errors_point_at_the_key(top, rate_limit, where, message):
    text = errors(top, rate_limit)
    assert where in text and message in text, text
