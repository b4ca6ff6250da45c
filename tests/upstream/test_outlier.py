"""Passive outlier detection: ejection, its growth, the cap, the return (twistgate.upstream.outlier)."""

from twisted.internet.task import Clock

from twistgate.upstream.outlier import OutlierDetector, OutlierState
from twistgate.upstream.settings import OutlierConfig


class T:
    def __init__(self, name):
        self.label = name
        self.outlier = OutlierState()


def detector(targets=3, **settings):
    clock = Clock()
    changes = []
    d = OutlierDetector(OutlierConfig(**settings), clock, changes.append, "app")
    return d, clock, changes, [T(f"t{i}") for i in range(targets)]


def fail(d, target, targets, times):
    for _ in range(times):
        d.record(target, False, targets)


def test_consecutive_failures_eject_and_a_timer_brings_it_back():
    d, clock, changes, ts = detector(consecutive_failures=3, base_ejection_time=10)
    fail(d, ts[0], ts, 2)
    d.record(ts[0], True, ts)  # a success resets the count
    fail(d, ts[0], ts, 2)
    assert ts[0].outlier.ejected_until is None
    fail(d, ts[0], ts, 1)
    assert ts[0].outlier.ejected_until == 10
    clock.advance(10)
    assert ts[0].outlier.ejected_until is None
    assert changes == [ts[0], ts[0]]


def test_ejection_time_grows_on_repeated_ejection_up_to_the_cap():
    d, clock, _, ts = detector(consecutive_failures=1, base_ejection_time=10, max_ejection_time=35)
    durations = []
    for _ in range(5):
        fail(d, ts[0], ts, 1)
        start = clock.seconds()
        durations.append(ts[0].outlier.ejected_until - start)
        clock.advance(durations[-1])
    assert durations == [10, 20, 30, 35, 35]


def test_a_long_clean_spell_resets_the_growth():
    d, clock, _, ts = detector(consecutive_failures=1, base_ejection_time=10, max_ejection_time=60)
    fail(d, ts[0], ts, 1)
    clock.advance(10)
    fail(d, ts[0], ts, 1)
    assert ts[0].outlier.ejected_until - clock.seconds() == 20
    clock.advance(20 + 60)  # back, then clean for max_ejection_time
    fail(d, ts[0], ts, 1)
    assert ts[0].outlier.ejected_until - clock.seconds() == 10


def test_never_more_than_the_share_is_ejected():
    d, _, _, ts = detector(targets=4, consecutive_failures=1, max_ejected=0.5)
    for t in ts:
        fail(d, t, ts, 1)
    assert sum(t.outlier.ejected_until is not None for t in ts) == 2


def test_one_of_two_may_go_but_a_lone_target_stays():
    d, _, _, two = detector(targets=2, consecutive_failures=1, max_ejected=0.1)
    fail(d, two[0], two, 1)
    fail(d, two[1], two, 1)
    assert [t.outlier.ejected_until is not None for t in two] == [True, False]
    d, _, _, one = detector(targets=1, consecutive_failures=1, max_ejected=0.5)
    fail(d, one[0], one, 5)
    assert one[0].outlier.ejected_until is None
    d, _, _, one = detector(targets=1, consecutive_failures=1, max_ejected=1.0)
    fail(d, one[0], one, 1)
    assert one[0].outlier.ejected_until is not None


def test_forget_and_resume():
    d, clock, _, ts = detector(consecutive_failures=1, base_ejection_time=10)
    fail(d, ts[0], ts, 1)
    clock.advance(3)
    OutlierDetector.forget(ts[0])
    assert clock.getDelayedCalls() == []
    d.resume(ts[0])
    clock.advance(7)
    assert ts[0].outlier.ejected_until is None
    assert d.retry_after(ts) is None
