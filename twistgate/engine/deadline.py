"""
`Deadline`: one timer per connection for whichever timeout applies now
(idle, request head, request body).

Moving a Twisted timer costs heap work; a keep-alive connection would move
it twice per request.  Instead the deadline is a kind and a due time, and
the one timer is only moved when it must fire *earlier*; when it fires
late for a deadline that has moved on, it re-arms itself for the rest.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime

__all__ = ["Deadline"]


class Deadline:
    """
    :param expired: called with ``(kind, now)`` when the deadline of ``kind``
        passed; it returns ``None`` (done) or a later due time to wait for.
    """

    __slots__ = ("_clock", "_expired", "_timer", "_timer_at", "kind", "due")

    def __init__(self, clock: IReactorTime, expired: Callable[[int, float], Optional[float]]) -> None:
        self._clock = clock
        self._expired = expired
        self._timer: Any = None
        self._timer_at = 0.0  # when `_timer` fires (kept here: a DelayedCall's getTime() is a Python call)
        self.kind = 0  # 0: no deadline
        self.due = 0.0

    def set(self, kind: int, seconds: float) -> None:
        self.kind = kind
        due = self._clock.seconds() + seconds
        self.due = due
        timer = self._timer
        if timer is None:
            self._timer = self._clock.callLater(seconds, self._fired)
            self._timer_at = due
        elif self._timer_at > due:
            timer.reset(seconds)
            self._timer_at = due

    def clear(self) -> None:
        self.kind = 0

    def cancel(self) -> None:
        self.kind = 0
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _fired(self) -> None:
        self._timer = None
        kind = self.kind
        if not kind:
            return
        now = self._clock.seconds()
        due = self.due if now < self.due else self._expired(kind, now)
        if due is not None and self.kind == kind:
            self.due = due
            delay = max(due - now, 0.0)
            self._timer = self._clock.callLater(delay, self._fired)
            self._timer_at = now + delay  # (what callLater works out: exact on a test clock)
