"""The memory store: bounded in bytes with LRU eviction, variants, invalidation."""

from __future__ import annotations

import random

from twistgate.headers import Headers

from twistgate.policies.cache.entry import ENTRY_OVERHEAD, Entry
from twistgate.policies.cache.store import MemoryStore

NOW = 1_800_000_000.0


def entry(size, vary=()):
    return Entry(status=200, reason=None, headers=((b"Date", b"x"),), body=b"x" * size, request_time=NOW, response_time=NOW, vary=vary)


def key(n):
    return ("app", "http", "gw", f"/{n}", b"")


def test_the_byte_bound_is_never_exceeded():
    """Thousands of random puts and lookups: the total never passes max_bytes, and it fills up."""
    rng = random.Random(7)
    store = MemoryStore(max_bytes=50_000)
    for i in range(3000):
        store.put(key(rng.randrange(400)), (), entry(rng.randrange(0, 5000)), max_variants=4)
        store.lookup(key(rng.randrange(400)), Headers(), ())
        assert store.bytes <= store.max_bytes
        assert store.bytes == sum(e.size for e in store._lru.values())
    assert store.bytes > store.max_bytes - 5000 - ENTRY_OVERHEAD - 100
    assert store.evictions > 0


def test_least_recently_used_goes_first():
    one = entry(1000)
    store = MemoryStore(max_bytes=3 * one.size)
    for n in (1, 2, 3):
        store.put(key(n), (), entry(1000), 4)
    store.lookup(key(1), Headers(), ())  # 1 is now the most recent
    store.put(key(4), (), entry(1000), 4)
    assert store.lookup(key(2), Headers(), ())[1] is None
    assert all(store.lookup(key(n), Headers(), ())[1] is not None for n in (1, 3, 4))


def test_too_big_for_the_whole_store_is_refused():
    store = MemoryStore(max_bytes=1000)
    assert not store.put(key(1), (), entry(2000), 4)
    assert store.bytes == 0 and len(store) == 0


def test_variants_coexist_and_are_capped_per_uri():
    store = MemoryStore(max_bytes=10**6)
    for value in ("1", "2", "3"):
        store.put(key(1), (value,), entry(10, vary=("foo",)), max_variants=2)
    assert len(store) == 2
    found = store.lookup(key(1), Headers({b"Foo": [b"3"]}), ())
    assert found[0] and found[1] is not None and found[2] == ("3",)
    known, missing, _ = store.lookup(key(1), Headers({b"Foo": [b"1"]}), ())
    assert known and missing is None  # the oldest variant made room


def test_a_new_vary_list_replaces_the_variants():
    store = MemoryStore(max_bytes=10**6)
    store.put(key(1), ("a",), entry(10, vary=("foo",)), 4)
    store.put(key(1), ("b",), entry(10, vary=("bar",)), 4)
    assert len(store) == 1
    assert store.lookup(key(1), Headers({b"Bar": [b"b"]}), ())[1] is not None


def test_invalidate_drops_every_variant_and_the_bytes():
    store = MemoryStore(max_bytes=10**6)
    store.put(key(1), ("a",), entry(10, vary=("foo",)), 4)
    store.put(key(1), ("b",), entry(10, vary=("foo",)), 4)
    store.put(key(2), (), entry(10), 4)
    assert store.invalidate(key(1)) == 2
    assert len(store) == 1 and store.bytes == entry(10).size
    assert store.lookup(key(1), Headers(), ())[0] is False
