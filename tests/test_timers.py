"""`Timers`: many timeouts behind one DelayedCall, run exactly when due."""

from __future__ import annotations

from twisted.internet.task import Clock

from twistgate.timers import Timers


def test_a_timer_runs_when_the_clock_reaches_its_due_time_not_before():
    """As clock.callLater would: advancing to the due time runs it, a moment before does not."""
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timers.call_later(30, ran.append, "a")
    clock.advance(29.999)
    assert ran == []
    clock.advance(0.001)
    assert ran == ["a"]
    assert clock.getDelayedCalls() == []


def test_timers_run_in_due_order_and_ties_in_the_order_they_were_set():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timers.call_later(3, ran.append, "late")
    timers.call_later(1, ran.append, "first")
    timers.call_later(1, ran.append, "second")
    assert len(clock.getDelayedCalls()) == 1  # one real timer, for the earliest
    clock.advance(1)
    assert ran == ["first", "second"]
    clock.advance(2)
    assert ran == ["first", "second", "late"]


def test_timers_set_at_different_times_run_at_their_own_due_times():
    """Re-arming for the next timer keeps it exact even when the sums are not round numbers."""
    clock = Clock()
    clock.advance(0.1)
    timers = Timers(clock)
    ran = []
    timers.call_later(10, ran.append, "a")  # due 10.1
    clock.advance(0.2)
    timers.call_later(20, ran.append, "b")  # due 20.3
    clock.advance(9.8)
    assert ran == ["a"]
    clock.advance(20.3 - clock.seconds())
    assert ran == ["a", "b"]


def test_a_cancelled_timer_never_runs_and_leaves_no_delayed_call():
    """An idle gateway has no timer pending: the last cancel cancels the real one too."""
    clock = Clock()
    timers = Timers(clock)
    ran = []
    first = timers.call_later(5, ran.append, 1)
    second = timers.call_later(6, ran.append, 2)
    first.cancel()
    assert not first.active() and second.active() and len(timers) == 1
    clock.advance(5)
    assert ran == []
    second.cancel()
    second.cancel()  # a no-op
    assert clock.getDelayedCalls() == [] and len(timers) == 0
    clock.advance(10)
    assert ran == []


def test_an_earlier_timer_moves_the_real_one_forward():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timers.call_later(10, ran.append, "ten")
    timers.call_later(2, ran.append, "two")
    clock.advance(2)
    assert ran == ["two"]
    clock.advance(8)
    assert ran == ["two", "ten"]


def test_call_at_and_get_time():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timer = timers.call_at(4.5, ran.append, "x")
    assert timer.getTime() == 4.5
    clock.advance(4.5)
    assert ran == ["x"] and not timer.active()


def test_a_timer_set_by_a_running_timer_does_not_delay_the_others():
    """A call that sets a later timer of its own must not postpone one already due earlier."""
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timers.call_later(1, lambda: timers.call_later(10, ran.append, "chained"))
    timers.call_later(2, ran.append, "two")
    clock.advance(1)
    clock.advance(1)
    assert ran == ["two"]
    clock.advance(9)
    assert ran == ["two", "chained"]


def test_many_cancelled_timers_are_compacted_away():
    """Cancelled timers do not pile up in the heap while a few stay pending."""
    clock = Clock()
    timers = Timers(clock)
    keep = timers.call_later(100, lambda: None)
    for _ in range(10_000):
        timers.call_later(30, lambda: None).cancel()
    assert len(timers) == 1
    assert len(timers._heap) < 200
    assert keep.active()


def test_a_failing_call_is_logged_and_the_others_still_run():
    from twisted.logger import globalLogPublisher

    clock = Clock()
    timers = Timers(clock)
    ran = []
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        timers.call_later(1, lambda: 1 / 0)
        timers.call_later(1, ran.append, "after")
        clock.advance(1)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert ran == ["after"]
    assert any(e.get("log_failure") is not None and e["log_failure"].check(ZeroDivisionError) for e in events)


class _OwnTimer:
    """An object that is its own timer (`Timers.arm`), as an upstream attempt is."""

    def __init__(self, timers, ran, name):
        from twistgate.timers import Timed

        class Own(Timed):
            __slots__ = ("_owner", "_due", "_call", "_args", "_seq")

        self.timer = Own()
        self.timer._owner = timers
        self.timer._call = None
        self.timers, self.ran, self.name = timers, ran, name

    def arm(self, due):
        return self.timers.arm(self.timer, due, self.ran.append, (self.name,))


def test_an_object_that_is_its_own_timer_runs_at_its_latest_due_time_only():
    """Cancelled and armed anew (a paused body resumed), its earlier entry in the heap never runs it."""
    clock = Clock()
    timers = Timers(clock)
    ran = []
    other = timers.call_at(50, ran.append, "other")
    own = _OwnTimer(timers, ran, "own")
    armed = own.arm(5)
    assert armed.active() and armed.getTime() == 5 and len(timers) == 2
    armed.cancel()
    assert not armed.active() and len(timers) == 1
    own.arm(8)
    clock.advance(5)
    assert ran == []
    clock.advance(3)
    assert ran == ["own"] and not armed.active()
    own.arm(9)  # again, once it ran
    clock.advance(1)
    assert ran == ["own", "own"]
    other.cancel()
    assert len(timers) == 0 and clock.getDelayedCalls() == []


def test_an_own_timer_armed_again_and_again_is_compacted_away():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    keep = timers.call_later(100, lambda: None)
    own = _OwnTimer(timers, ran, "own")
    for due in range(10_000):
        own.arm(30 + due).cancel()
    assert len(timers) == 1 and len(timers._heap) < 200 and keep.active()
    clock.advance(20_000)
    assert ran == []
