"""
The memory backend stays bounded under any number of distinct keys, forgets
idle keys by itself, and forgetting an expired key never changes an answer.
"""

from __future__ import annotations

import random

from twisted.internet.task import Clock

from twistgate.policies.ratelimit.algorithms import FIXED_WINDOW, SLIDING_WINDOW, TOKEN_BUCKET, Limit
from twistgate.policies.ratelimit.memory import MemoryBackend

S = 1_000_000

LIMITS = [
    Limit(TOKEN_BUCKET, 5, 1 * S, 5),
    Limit(FIXED_WINDOW, 5, 1 * S, 5),
    Limit(SLIDING_WINDOW, 5, 1 * S, 5),
]


def test_many_distinct_keys_never_exceed_max_keys():
    """A key-spraying client (one new key per request) cannot grow memory past the bound."""
    clock = Clock()
    backend = MemoryBackend(clock, max_keys=1000)
    lim = [Limit(TOKEN_BUCKET, 100, 60 * S, 100)]
    high = 0
    for i in range(300_000):
        backend.decide([f"client-{i}"], lim)
        if i % 1000 == 0:
            high = max(high, len(backend))
            clock.advance(0.001)
    assert high <= 1000 and len(backend) <= 1000
    assert backend.evicted >= 300_000 - 1000 - 10


def test_idle_keys_expire_by_themselves():
    """Keys that went quiet are dropped as other traffic flows, without hitting the bound."""
    clock = Clock()
    backend = MemoryBackend(clock, max_keys=100_000)
    lim = [Limit(FIXED_WINDOW, 10, 1 * S, 10)]
    for i in range(5000):
        backend.decide([f"old-{i}"], lim)
    assert len(backend) == 5000
    clock.advance(2)
    for i in range(5000):
        backend.decide(["active"], lim)  # each decision sweeps a couple of expired keys
    assert len(backend) == 1
    assert backend.evicted == 0


def test_sweep_drops_every_expired_key():
    clock = Clock()
    backend = MemoryBackend(clock)
    for i in range(10):
        backend.decide([f"k{i}"], [LIMITS[2]])
    clock.advance(0.5)
    backend.decide(["fresh"], [LIMITS[2]])
    clock.advance(0.6)
    assert backend.sweep() == 10
    assert len(backend) == 1


def test_expiry_never_changes_an_answer():
    """
    Two backends see the same random traffic; one forgets every expired key
    at once, the other keeps everything: every decision is the same.
    """
    rng = random.Random(5)
    clock = Clock()
    forgetful = MemoryBackend(clock)
    keeper = MemoryBackend(clock, max_keys=10**9)
    keeper._trim = lambda now: None  # never drops anything
    keeper_entries = keeper._entries
    for step in range(20000):
        clock.advance(rng.choice([0, 0, 0.001, 0.05, 0.2, 0.9, 1.0, 2.5]))
        key = rng.choice("abc")
        limits = rng.sample(LIMITS, k=rng.randint(1, 3))
        keys = [f"{key}:{lim.algorithm}" for lim in limits]
        a = forgetful.decide(keys, limits)
        forgetful.sweep()
        # The keeper must not drop expired entries either: undo the backend's own expiry.
        for k in keys:
            if k in keeper_entries:
                keeper_entries[k][1] = 2**62
        b = keeper.decide(keys, limits)
        assert a == b, step
