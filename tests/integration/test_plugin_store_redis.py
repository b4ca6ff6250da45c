"""
The plugin store on a real Redis (issue 17 item 3): the same answers as the
memory backend, exact counters under concurrency, expiry on the server,
shared by two gateways (as by two processes or nodes), a fast
`StoreUnavailable` while Redis is down, and recovery without a restart.
"""

from __future__ import annotations

import random
import time

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater

from tests.integration.test_ratelimit_redis import redis_server  # noqa: F401  (the fixture)
from twistgate.plugins.redis_store import RedisStore
from twistgate.plugins.store import PluginStore, StoreUnavailable


@pytest.fixture
def redis_store(redis_server, reactor):  # noqa: F811
    store = RedisStore(reactor, host="127.0.0.1", port=redis_server.port, timeout=2.0, key_prefix=f"t{random.random()}:")
    store.start()
    yield store
    pytest_twisted.blockon(store.stop())


@pytest_twisted.inlineCallbacks
def test_values_counters_and_expiry(redis_store):
    store = PluginStore(redis_store, "quota")  # the first call waits for the connection
    assert (yield store.get("missing", 0)) == 0
    yield store.set("plan", {"tier": "gold"})
    assert (yield store.get("plan")) == {"tier": "gold"}
    assert (yield store.incr("hits", ttl=1)) == 1
    assert (yield store.incr("hits", 4, ttl=100)) == 5  # the first expiry is kept
    assert (yield store.get("hits")) == 5
    with pytest.raises(ValueError):
        yield store.incr("plan")
    yield store.set("short", 1, ttl=0.2)
    yield deferLater(redis_store._reactor, 1.3, lambda: None)
    assert (yield store.get("hits")) is None and (yield store.get("short")) is None
    assert (yield store.delete("plan")) is True and (yield store.delete("plan")) is False


@pytest_twisted.inlineCallbacks
def test_two_gateways_share_exact_counts(redis_server, redis_store, reactor):  # noqa: F811
    """A second connection stands for another process or node: 100 concurrent increments, each value once."""
    other = RedisStore(reactor, host="127.0.0.1", port=redis_server.port, timeout=2.0, key_prefix=redis_store.key_prefix)
    other.start()
    try:
        mine, theirs = PluginStore(redis_store, "quota"), PluginStore(other, "quota")
        results = yield DeferredList(
            [(mine if i % 2 else theirs).incr("tenant:acme") for i in range(100)], fireOnOneErrback=True
        )
        assert sorted(value for _, value in results) == list(range(1, 101))
    finally:
        yield other.stop()


@pytest_twisted.inlineCallbacks
def test_redis_down_fails_fast_and_recovers(redis_server, reactor):  # noqa: F811
    backend = RedisStore(reactor, host="127.0.0.1", port=redis_server.port, timeout=0.3)
    backend.start()
    store = PluginStore(backend, "quota")
    try:
        assert (yield store.incr("n")) == 1
        redis_server.stop()
        yield deferLater(reactor, 0.2, lambda: None)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            yield store.incr("n")
        assert time.monotonic() - started < 1.0 and backend.healthy is False
        redis_server.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                yield store.set("back", 1)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not come back"
                yield deferLater(reactor, 0.1, lambda: None)
        assert backend.healthy is True
    finally:
        yield backend.stop()
