"""
The three algorithms through the memory backend, on a `Clock`: exactly at
the limit, at window edges, refill rounding, several limits at once, and
what is reported (remaining, reset, retry).
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from twistgate.policies.ratelimit.algorithms import FIXED_WINDOW, SLIDING_WINDOW, TOKEN_BUCKET, Limit
from twistgate.policies.ratelimit.memory import MemoryBackend

S = 1_000_000  # µs


def limit(algorithm: int, count: int, per_s: float, burst: int = 0) -> Limit:
    return Limit(algorithm, count, int(per_s * S), burst or count)


def backend():
    clock = Clock()
    return clock, MemoryBackend(clock)


def allowed(b: MemoryBackend, lim: Limit, key: str = "k") -> bool:
    return b.decide([key], [lim]).allowed


# -- token bucket ---------------------------------------------------------------


def test_token_bucket_burst_then_refill():
    """Burst of 5, the 6th is refused; one token back after 1/rate, not before."""
    clock, b = backend()
    lim = limit(TOKEN_BUCKET, 1, 1, burst=5)  # 1/s, burst 5
    assert [allowed(b, lim) for _ in range(5)] == [True] * 5
    decision = b.decide(["k"], [lim])
    assert not decision.allowed
    assert decision.outcomes[0].retry_us == S
    clock.advance(0.999999)
    assert not allowed(b, lim)
    clock.advance(0.000001)
    assert allowed(b, lim)
    assert not allowed(b, lim)


def test_token_bucket_refill_rounding_with_a_rate_that_is_not_a_round_number():
    """3/s: a token takes 333333.3 µs, so 333333 µs is still too early."""
    clock, b = backend()
    lim = limit(TOKEN_BUCKET, 3, 1, burst=1)
    assert allowed(b, lim)
    clock.advance(0.333333)
    assert not allowed(b, lim)
    clock.advance(0.000001)
    assert allowed(b, lim)


def test_token_bucket_never_refills_past_the_burst():
    clock, b = backend()
    lim = limit(TOKEN_BUCKET, 10, 1, burst=3)
    assert allowed(b, lim)
    clock.advance(3600)
    assert [allowed(b, lim) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_reports_remaining_and_time_to_full():
    clock, b = backend()
    lim = limit(TOKEN_BUCKET, 2, 1, burst=4)  # 2/s, burst 4
    outcome = b.decide(["k"], [lim]).outcomes[0]
    assert (outcome.allowed, outcome.remaining, outcome.reset_us, outcome.retry_us) == (True, 3, S // 2, 0)
    for _ in range(3):
        b.decide(["k"], [lim])
    outcome = b.decide(["k"], [lim]).outcomes[0]
    assert (outcome.allowed, outcome.remaining, outcome.reset_us, outcome.retry_us) == (False, 0, 2 * S, S // 2)


def test_denied_requests_do_not_consume():
    """Hammering while refused does not push the next allowed request further away."""
    clock, b = backend()
    lim = limit(TOKEN_BUCKET, 1, 1, burst=1)
    assert allowed(b, lim)
    for _ in range(50):
        clock.advance(0.01)
        assert not allowed(b, lim)
    clock.advance(0.5)
    assert allowed(b, lim)


# -- fixed window ---------------------------------------------------------------


def test_fixed_window_exactly_at_the_limit_and_the_edge():
    """10/min: the 10th is allowed, the 11th not; at exactly the next minute all 10 again."""
    clock, b = backend()
    lim = limit(FIXED_WINDOW, 10, 60)
    clock.advance(30)
    assert [allowed(b, lim) for _ in range(11)] == [True] * 10 + [False]
    outcome = b.decide(["k"], [lim]).outcomes[0]
    assert outcome.retry_us == outcome.reset_us == 30 * S
    clock.advance(29.999999)
    assert not allowed(b, lim)
    clock.advance(0.000001)  # t = 60 s: a new window
    assert [allowed(b, lim) for _ in range(11)] == [True] * 10 + [False]


def test_fixed_window_allows_a_burst_across_the_edge():
    """The known weakness of fixed windows (documented): 2N around an edge."""
    clock, b = backend()
    lim = limit(FIXED_WINDOW, 5, 10)
    clock.advance(9.9)
    assert all(allowed(b, lim) for _ in range(5))
    clock.advance(0.1)
    assert all(allowed(b, lim) for _ in range(5))


# -- sliding window -------------------------------------------------------------


def test_sliding_window_is_exact_over_any_period():
    """5 per 10 s: after 5 at t=9.9, nothing until t=19.9 (unlike a fixed window)."""
    clock, b = backend()
    lim = limit(SLIDING_WINDOW, 5, 10)
    clock.advance(9.9)
    assert all(allowed(b, lim) for _ in range(5))
    clock.advance(0.1)
    assert not allowed(b, lim)
    decision = b.decide(["k"], [lim])
    assert decision.outcomes[0].retry_us == int(9.9 * S)
    clock.advance(9.899999)
    assert not allowed(b, lim)
    clock.advance(0.000001)  # exactly 10 s after the first: it leaves the window
    assert [allowed(b, lim) for _ in range(6)] == [True] * 5 + [False]


def test_sliding_window_frees_one_slot_per_old_request():
    clock, b = backend()
    lim = limit(SLIDING_WINDOW, 3, 10)
    for t in (0, 1, 2):
        clock.advance(t - clock.seconds())
        assert allowed(b, lim)
    clock.advance(10 - clock.seconds())
    outcome = b.decide(["k"], [lim]).outcomes[0]
    assert outcome.allowed and outcome.remaining == 0
    assert not allowed(b, lim)
    clock.advance(1)
    assert allowed(b, lim)


# -- several limits -------------------------------------------------------------


def test_several_limits_all_must_allow_and_a_refusal_consumes_from_none():
    """10/s and 12/min: the minute limit refuses the 13th; the second's bucket is not spent by refusals."""
    clock, b = backend()
    per_second = limit(TOKEN_BUCKET, 10, 1)
    per_minute = limit(FIXED_WINDOW, 12, 60)
    keys = ["s", "m"]
    results = [b.decide(keys, [per_second, per_minute]).allowed for _ in range(11)]
    assert results == [True] * 10 + [False]
    clock.advance(1)
    results = [b.decide(keys, [per_second, per_minute]) for _ in range(3)]
    assert [d.allowed for d in results] == [True, True, False]
    refused = results[-1]
    assert refused.outcomes[0].allowed and refused.outcomes[0].remaining == 8  # not spent
    assert not refused.outcomes[1].allowed and refused.outcomes[1].retry_us == 59 * S


@pytest.mark.parametrize("algorithm", [TOKEN_BUCKET, FIXED_WINDOW, SLIDING_WINDOW])
def test_keys_are_independent(algorithm):
    clock, b = backend()
    lim = limit(algorithm, 2, 10)
    assert [allowed(b, lim, "a") for _ in range(3)] == [True, True, False]
    assert [allowed(b, lim, "b") for _ in range(3)] == [True, True, False]
