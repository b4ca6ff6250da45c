"""Calling an extension's method without trusting it (twistgate.plugins.isolation), on a Clock."""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from twistgate.plugins.isolation import ExtensionFailed, Label, WrongAnswer, guarded_call

LABEL = Label("twistgate.balancers", "mine", "choose", "upstreams.u")


def positive(answer: Any) -> int:
    if not isinstance(answer, int) or answer <= 0:
        raise WrongAnswer(f"returned {answer!r}, not a positive int")
    return answer * 10


def call(method: Any, clock: Any = None) -> Any:
    return guarded_call(method, (), label=LABEL, clock=clock or Clock(), timeout=1.0, check=positive)


def outcome(d: Deferred) -> Any:
    box: List[Any] = []
    d.addBoth(box.append)
    return box[0] if box else None


def test_a_synchronous_answer_stays_synchronous():
    """No Deferred, no timer: the hot path of a plain method."""
    clock = Clock()
    assert call(lambda: 4, clock) == 40
    assert clock.getDelayedCalls() == []


def test_exceptions_and_wrong_answers_fail_and_are_logged_with_the_name():
    """Raised or wrong: one ExtensionFailed, one log event naming the extension and where it is configured."""
    with capturedLogs() as events:
        with pytest.raises(ExtensionFailed, match="mine: raised ZeroDivisionError"):
            call(lambda: 1 / 0)
        with pytest.raises(ExtensionFailed, match="mine: returned 'x', not a positive int"):
            call(lambda: "x")
    assert [(e["log_level"], e["extension"], e["where"], e["method"]) for e in events] == [
        (LogLevel.critical, "mine", "upstreams.u", "choose"),
        (LogLevel.warn, "mine", "upstreams.u", "choose"),
    ]
    assert events[0]["log_failure"].check(ZeroDivisionError)


def test_deferreds_and_coroutines_are_awaited_and_checked():
    """A Deferred or an awaitable of the answer; a failed one is a failure."""

    async def later() -> int:
        return 2

    assert outcome(call(lambda: succeed(3))) == 30
    assert outcome(call(later)) == 20
    with capturedLogs():
        failed = outcome(call(lambda: fail(KeyError("k"))))
        wrong = outcome(call(lambda: succeed(-1)))
    assert failed.check(ExtensionFailed) and "raised KeyError" in failed.value.reason
    assert wrong.check(ExtensionFailed) and "not a positive int" in wrong.value.reason


def test_a_hang_fails_at_the_bound_and_a_late_answer_is_dropped():
    """No answer within the timeout: ExtensionFailed, the plugin's Deferred cancelled, later results ignored."""
    clock = Clock()
    pending: Deferred = Deferred()  # no canceller: cancelled at the bound, its late answer ignored
    with capturedLogs() as events:
        d = call(lambda: pending, clock)
        clock.advance(0.5)
        assert not d.called
        clock.advance(0.5)
        failure = outcome(d)
        pending.callback(5)  # too late: nobody listens
    assert failure.check(ExtensionFailed) and failure.value.reason == "no answer within 1s"
    assert [e["log_level"] for e in events] == [LogLevel.warn]
    assert clock.getDelayedCalls() == []


def test_cancelling_the_call_cancels_the_plugin_without_blaming_it():
    """The caller going away (client gone) is not the extension's failure: nothing is logged."""
    clock = Clock()
    cancelled: List[bool] = []
    pending: Deferred = Deferred(lambda d: cancelled.append(True))
    with capturedLogs() as events:
        d = call(lambda: pending, clock)
        d.cancel()
    assert cancelled == [True] and outcome(d).check(Exception)
    assert events == [] and clock.getDelayedCalls() == []


def test_an_awaitable_that_is_not_a_coroutine():
    """Any object with __await__ (an asyncio-style future) is accepted."""

    class Ready:
        def __await__(self):
            return iter(())

    class Wrapper:
        def __await__(self):
            yield from Ready().__await__()
            return 7

    assert outcome(call(lambda: Wrapper())) == 70
