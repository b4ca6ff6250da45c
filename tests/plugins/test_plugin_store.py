"""
Issue 17 item 3: plugin state that survives reloads and is shared by a
plugin's instances (``context.store``), on the rate limiter's backends.
The Redis backend against a real redis-server: tests/integration/test_plugin_store_redis.py.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from tests.ops.helpers import AdminGateway
from twistgate.config import ConfigError, load_text
from twistgate.plugins import PluginContext, Response, hookimpl
from twistgate.plugins.store import MemoryStore, PluginStore
from twistgate.plugins.store_config import PluginStoreConfig, effective
from twistgate.policies.ratelimit.config import RedisAddress
from twistgate.testing import result_of


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return PluginStore(MemoryStore(clock), "quota")


def test_values_and_counters(store):
    assert result_of(store.get("missing")) is None
    assert result_of(store.get("missing", 0)) == 0
    result_of(store.set("plan", {"tier": "gold", "limits": [1, 2]}))
    assert result_of(store.get("plan")) == {"tier": "gold", "limits": [1, 2]}
    assert [result_of(store.incr("hits")) for _ in range(3)] == [1, 2, 3]
    assert result_of(store.incr("hits", -2)) == 1
    assert result_of(store.get("hits")) == 1  # a counter reads as an integer
    assert result_of(store.delete("hits")) is True
    assert result_of(store.delete("hits")) is False
    with pytest.raises(ValueError, match="not an integer"):
        result_of(store.incr("plan"))


def test_expiry_on_the_gateway_clock(store, clock):
    result_of(store.set("flag", True, ttl=10))
    assert result_of(store.incr("day", ttl=60)) == 1
    clock.advance(30)
    assert result_of(store.incr("day", ttl=60)) == 2  # the window started at the first increment
    assert result_of(store.get("flag")) is None
    clock.advance(30)
    assert result_of(store.get("day")) is None
    assert result_of(store.incr("day", ttl=60)) == 1


def test_keys_are_per_plugin_and_bad_input_is_refused_at_once(clock):
    backend = MemoryStore(clock)
    a, b = PluginStore(backend, "a"), PluginStore(backend, "b")
    result_of(a.incr("n"))
    assert result_of(b.get("n")) is None
    assert result_of(backend.get("a:n")) == "1"
    with pytest.raises(TypeError):
        a.set("k", None)
    with pytest.raises(TypeError):
        a.set("k", object())
    with pytest.raises(ValueError):
        a.incr("k", ttl=0)
    with pytest.raises(TypeError):
        a.get("")


def test_memory_is_bounded(clock):
    backend = MemoryStore(clock, max_keys=3)
    for key in "abcd":
        result_of(backend.set(key, "1", None))
    assert len(backend) == 3 and result_of(backend.get("a")) is None and backend.evicted == 1


class Counting:
    """Counts every request in its store and says the count in a header."""

    def __init__(self, options, context):
        self.store = context.store

    @hookimpl
    async def on_request(self, request):
        count = await self.store.incr("requests")
        return Response(status=200, headers={"X-Count": str(count)}, body=b"")


CONFIG = """
listeners: [{name: p, endpoint: "tcp:0"}]
admin: {endpoint: "tcp:0", token: s3cret}
upstreams: {app: {targets: [{url: "http://app:80"}]}}
plugins:
  counting: {}
routes:
  - {name: plain, path: /plain, upstream: app}
  - {name: own, path: /own, upstream: app, plugins: {counting: {}}}   # a second instance
"""


def test_instances_share_the_count_and_a_reload_keeps_it(tmp_path):
    """The quota was granted twice (one count per instance) and reset by every reload: no longer."""
    gw = AdminGateway(tmp_path / "gw.yaml", CONFIG, Resource(), plugins={"counting": Counting})

    def count(path):
        return gw.gw.request("GET", f"http://gw{path}").headers.getRawHeaders("X-Count")[0]

    assert [count("/plain"), count("/own"), count("/plain")] == ["1", "2", "3"]
    first = gw.service.generation
    assert result_of(gw.service.reload())["ok"]  # the same file: a new generation, new instances
    assert gw.service.generation is not first
    assert count("/own") == "4"


def test_the_store_follows_the_rate_limiter_unless_configured():
    redis = RedisAddress(host="10.0.0.1")
    text = "listeners: [{name: p, endpoint: 'tcp:0'}]\n"
    assert effective(None, None) == PluginStoreConfig()
    shared = load_text(text + "rate_limiting: {backend: 'redis://10.0.0.1:6379/0', timeout: 50ms}")
    assert effective(None, shared.sections["rate_limiting"]) == PluginStoreConfig(redis=redis, timeout=0.05)
    own = load_text(text + "plugin_store: {backend: memory, max_keys: 10}\nrate_limiting: {backend: 'redis://10.0.0.1'}")
    assert effective(own.sections["plugin_store"], own.sections["rate_limiting"]).redis is None
    with pytest.raises(ConfigError, match=r"plugin_store.max_keys: max_keys applies to the memory backend only"):
        load_text(text + "plugin_store: {backend: 'redis://h', max_keys: 5}")


def test_a_context_made_by_hand_has_a_private_store():
    context = PluginContext(name="p", clock=Clock())
    assert result_of(context.store.incr("x")) == 1
