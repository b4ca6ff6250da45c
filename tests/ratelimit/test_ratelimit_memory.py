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


def test_a_single_limit_decides_as_it_would_beside_other_limits():
    """
    A route with one limit takes a shorter way through `decide`; beside a
    second limit that never refuses (and so never changes the answer) the
    same traffic takes the general one: same answers, same stored state.
    """
    never = Limit(FIXED_WINDOW, 10**9, 1 * S, 10**9)
    for limit in LIMITS:
        rng = random.Random(limit.algorithm)
        alone, beside = MemoryBackend(Clock()), MemoryBackend(Clock())
        now, refused = 0, 0
        for _ in range(5000):
            now += rng.choice([0, 1, 10_000, 50_000, 200_000, 3 * S])
            key = f"k{rng.randrange(4)}"
            one = alone.decide([key], [limit], now_us=now)
            two = beside.decide([key, "other"], [limit, never], now_us=now)
            assert one.allowed == two.allowed
            assert one.outcomes[0] == two.outcomes[0]
            refused += not one.allowed
            assert alone._entries.get(key) == beside._entries.get(key)
        assert refused > 10  # both ways were taken: allowed and refused


def test_a_one_limit_route_is_answered_with_its_outcome_as_the_decision():
    """`decide_one` gives the Outcome (no Decision made per request); `decide` still gives a Decision of it."""
    from twistgate.policies.ratelimit.algorithms import Decision, Outcome

    for limit in LIMITS:
        one, general = MemoryBackend(Clock()), MemoryBackend(Clock())
        answers = set()
        for now in range(0, 5 * S, S // 8):
            outcome = one.decide_one("k", limit, now)
            decision = general.decide(["k"], [limit], now_us=now)
            assert type(outcome) is Outcome and type(decision) is Decision
            assert outcome.outcomes == (outcome,) and decision.outcomes == (outcome,)
            assert outcome.allowed == decision.allowed
            answers.add(outcome.allowed)
        assert answers == {True, False}
