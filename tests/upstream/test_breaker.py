"""The circuit breaker's state machine on a Clock (twistgate.upstream.breaker)."""

from twisted.internet.task import Clock

from twistgate.upstream.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from twistgate.upstream.settings import BreakerConfig


def breaker(**settings):
    clock = Clock()
    moves = []
    b = CircuitBreaker(BreakerConfig(**settings), clock, lambda old, new: moves.append((old, new)))
    return b, clock, moves


def fail(b, times=1):
    for _ in range(times):
        b.record(b.admit(), False)


def test_consecutive_failures_open_it():
    b, _, moves = breaker(failure_threshold=3)
    fail(b, 2)
    b.record(b.admit(), True)  # a success resets the count
    fail(b, 2)
    assert b.state == CLOSED
    fail(b)
    assert b.state == OPEN and moves == [(CLOSED, OPEN)]


def test_open_refuses_without_touching_anything():
    b, _, _ = breaker(failure_threshold=1)
    fail(b)
    assert b.admit() is None and not b.allows()


def test_recovery_is_a_timer_not_the_next_request():
    """After recovery_timeout the breaker is half-open by itself: no request needed."""
    b, clock, moves = breaker(failure_threshold=1, recovery_timeout=30)
    fail(b)
    clock.advance(29.9)
    assert b.state == OPEN
    assert b.retry_after() == 0.1 or abs(b.retry_after() - 0.1) < 1e-9
    clock.advance(0.1)
    assert b.state == HALF_OPEN
    assert moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]
    assert clock.getDelayedCalls() == []


def test_half_open_lets_through_only_the_configured_probes():
    b, clock, _ = breaker(failure_threshold=1, recovery_timeout=1, half_open_requests=2, success_threshold=2)
    fail(b)
    clock.advance(1)
    first, second = b.admit(), b.admit()
    assert first is not None and second is not None
    assert b.admit() is None  # the third waits for a probe to finish
    b.record(first, True)
    assert b.state == HALF_OPEN
    third = b.admit()
    assert third is not None
    b.record(second, True)
    assert b.state == CLOSED  # success_threshold 2 reached


def test_a_failed_probe_opens_it_again_with_a_fresh_timer():
    b, clock, moves = breaker(failure_threshold=1, recovery_timeout=5)
    fail(b)
    clock.advance(5)
    b.record(b.admit(), False)
    assert b.state == OPEN
    clock.advance(4.9)
    assert b.state == OPEN
    clock.advance(0.1)
    assert b.state == HALF_OPEN
    assert moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN)]


def test_outcomes_from_an_earlier_state_decide_nothing():
    """A slow request admitted while closed does not close (or reopen) a half-open breaker."""
    b, clock, _ = breaker(failure_threshold=1, recovery_timeout=1)
    slow = b.admit()
    fail(b)
    clock.advance(1)
    b.record(slow, True)
    assert b.state == HALF_OPEN
    b.record(slow, False)
    assert b.state == HALF_OPEN


def test_released_probe_frees_its_slot():
    b, clock, _ = breaker(failure_threshold=1, recovery_timeout=1)
    fail(b)
    clock.advance(1)
    probe = b.admit()
    assert b.admit() is None
    b.release(probe)
    assert b.admit() is not None


def test_stop_and_resume_rearm_the_recovery_timer():
    b, clock, _ = breaker(failure_threshold=1, recovery_timeout=10)
    fail(b)
    clock.advance(4)
    b.cancel_timer()
    assert clock.getDelayedCalls() == []
    b.resume()
    clock.advance(6)
    assert b.state == HALF_OPEN
