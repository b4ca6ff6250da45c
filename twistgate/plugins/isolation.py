"""
Calling an extension's one method without trusting it.

`guarded_call` runs the method and accepts its answer, a Deferred of it or
an awaitable of it.  Whatever goes wrong (an exception, no answer within
the bound, an answer of the wrong type) becomes one `ExtensionFailed`,
logged once with the extension's name, so each caller only decides what a
failure means for it (a 5xx, an unhealthy mark, the last good target list).

A synchronous answer stays synchronous: no Deferred and no timer on the hot
path.  A method that blocks the thread cannot be interrupted (Twisted runs
everything on one thread); the bound covers Deferreds and awaitables.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ExtensionFailed", "WrongAnswer", "guarded_call"]

_log = Logger(namespace="twistgate.extensions")

#: check(answer) -> the value the caller uses; raises WrongAnswer to refuse it.
Check = Callable[[Any], Any]


class WrongAnswer(Exception):
    """Raised by a check: the extension answered, but not with what its method promises."""


class ExtensionFailed(Exception):
    """
    An extension method failed: raised, timed out, or answered wrongly.

    :ivar extension: its configured name (``my_balancer``).
    :ivar reason: what went wrong, for logs and ``last_error``.
    """

    def __init__(self, extension: str, reason: str) -> None:
        super().__init__(f"{extension}: {reason}")
        self.extension = extension
        self.reason = reason


class Label:
    """Who is being called, for the log: group, name, method and where it is configured."""

    __slots__ = ("group", "name", "method", "where")

    def __init__(self, group: str, name: str, method: str, where: str) -> None:
        self.group, self.name, self.method, self.where = group, name, method, where

    def fields(self) -> Dict[str, str]:
        return {"group": self.group, "extension": self.name, "method": self.method, "where": self.where}


def guarded_call(
    method: Callable[..., Any],
    args: tuple,
    *,
    label: Label,
    clock: Any,
    timeout: float,
    check: Check,
) -> Any:
    """
    ``check(method(*args))``, or a Deferred of it when the method answered
    with a Deferred or an awaitable (bounded by `timeout` on `clock`).

    :raises ExtensionFailed: (or fails with it) on any failure, logged.
    """
    try:
        answer = method(*args)
    except Exception:
        raise _failed(label, Failure()) from None
    if isinstance(answer, Deferred) or inspect.isawaitable(answer):
        return _bounded(_as_deferred(answer), label, clock, timeout, check)
    return _checked(answer, label, check)


def _as_deferred(answer: Any) -> "Deferred[Any]":
    if isinstance(answer, Deferred):
        return answer
    if inspect.iscoroutine(answer):
        return Deferred.fromCoroutine(answer)

    async def awaited() -> Any:
        return await answer

    return ensureDeferred(awaited())


def _checked(answer: Any, label: Label, check: Check) -> Any:
    try:
        return check(answer)
    except WrongAnswer as error:
        raise _wrong(label, str(error)) from None
    except Exception:
        raise _failed(label, Failure()) from None


def _bounded(inner: "Deferred[Any]", label: Label, clock: Any, timeout: float, check: Check) -> "Deferred[Any]":
    """`inner` checked, failing with ExtensionFailed after `timeout`; cancelling cancels `inner`."""
    cancelled = []

    def cancel(_: Any) -> None:
        cancelled.append(True)
        if timer.active():
            timer.cancel()
        inner.cancel()  # `result` then fails with CancelledError (Deferred.cancel)

    result: Deferred[Any] = Deferred(cancel)

    def expire() -> None:
        if not result.called:
            result.errback(Failure(_wrong(label, f"no answer within {timeout:g}s")))
        inner.cancel()  # best effort: its late answer is dropped below

    timer = clock.callLater(timeout, expire)

    def settle(answer: Any) -> None:
        if timer.active():
            timer.cancel()
        if cancelled or result.called:
            return None  # cancelled by the caller, or already timed out: drop it
        if isinstance(answer, Failure):
            if answer.check(CancelledError):
                result.errback(Failure(_wrong(label, "its Deferred was cancelled")))
            else:
                result.errback(Failure(_failed(label, answer)))
            return None
        try:
            value = _checked(answer, label, check)
        except ExtensionFailed as error:
            result.errback(Failure(error))
        else:
            result.callback(value)
        return None

    inner.addBoth(settle)
    return result


def _failed(label: Label, failure: Failure) -> ExtensionFailed:
    error = failure.value
    reason = f"raised {type(error).__name__}: {error}" if str(error) else f"raised {type(error).__name__}"
    _log.failure(
        "{group} extension {extension!r} ({where}) failed in {method}()",
        failure,
        group=label.group,
        extension=label.name,
        method=label.method,
        where=label.where,
    )
    return ExtensionFailed(label.name, reason)


def _wrong(label: Label, reason: str) -> ExtensionFailed:
    _log.warn(
        "{group} extension {extension!r} ({where}) failed in {method}(): {reason}",
        reason=reason,
        **label.fields(),
    )
    return ExtensionFailed(label.name, reason)
