"""
`Timers`: the gateway's per-request timeouts on one clock, for the price of
one `DelayedCall`.

Every request arms a route timeout, a read timeout per attempt and a body
idle timeout, and nearly all of them are cancelled long before they are
due.  A Twisted `DelayedCall` each costs a Python object with nine fields,
a heap insertion whose comparisons are Python calls, and a cancellation
that leaves it in the reactor's heap until a compaction.  Here a timer is a
small slotted object in a heap of plain tuples (C comparisons), and only
the earliest one is a real `DelayedCall` on the injected clock.  An object
on every request's path can be its own timer (`Timed`, armed with
`Timers.arm`: an upstream attempt's read timer), so arming one makes no
object at all: each heap entry carries the sequence number it was armed
with, and an entry left from an earlier arming is ignored.

Timing is exact, not coarse: a timer runs when the clock reaches its due
time, in due order (ties in the order they were set), as
``clock.callLater`` would run it; `twisted.internet.task.Clock` drives them
in tests as it drives any timer.  Cancelled timers are dropped from the heap
when they reach its top, or all at once when they outnumber the live ones;
when no timer is left, the real `DelayedCall` is cancelled too, so an idle
gateway has none pending.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from math import inf, nextafter
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["Timed", "Timer", "Timers"]

_log = Logger()
_COMPACT_AT = 64  # cancelled entries tolerated in the heap before a compaction is considered


class Timed:
    """
    A pending call's face (`cancel`, `active` and `getTime`, as on a
    `DelayedCall`) over fields its subclass declares: ``_owner`` (the
    `Timers`), ``_due``, ``_call``, ``_args`` and ``_seq`` (the heap entry
    that is its own).  `Timer` is the one `Timers.call_at` makes; an object
    on every request's path may be its own timer instead (`Timers.arm`), one
    object fewer per request.
    """

    __slots__ = ()

    _owner: "Timers"
    _due: float
    _call: Optional[Callable[..., Any]]
    _args: Tuple[Any, ...]
    _seq: int

    def active(self) -> bool:
        """Neither run nor cancelled yet."""
        return self._call is not None

    def getTime(self) -> float:
        """The clock time it is (or was) due at."""
        return self._due

    def cancel(self) -> None:
        """Never run it (a no-op once it ran or was cancelled)."""
        if self._call is not None:
            self._call = None
            self._args = ()
            owner = self._owner
            owner._live -= 1
            if not owner._live:
                owner._emptied()
                return
            owner._dead += 1
            if owner._dead > _COMPACT_AT and owner._dead > owner._live:
                owner._compact()


class Timer(Timed):
    """One pending call (see `Timers.call_at`)."""

    __slots__ = ("_owner", "_due", "_call", "_args", "_seq")

    def __init__(self, owner: "Timers") -> None:
        self._owner = owner


class Timers:
    """Timers on one clock (see the module docstring)."""

    __slots__ = ("clock", "_heap", "_seq", "_armed", "_armed_at", "_live", "_dead")

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock  # the clock every timer here runs on
        self._heap: List[Tuple[float, int, Timed]] = []
        self._seq = 0
        self._armed: Any = None  # the one DelayedCall, for the earliest due time
        self._armed_at = inf
        self._live = 0
        self._dead = 0

    def call_later(self, delay: float, call: Callable[..., Any], *args: Any) -> Timer:
        """Run ``call(*args)`` once `delay` seconds from now on the clock, unless cancelled first."""
        clock = self.clock
        due = clock.seconds() + delay
        if due < self._armed_at:
            armed = self._armed
            if armed is not None:
                armed.cancel()
            self._armed_at = due
            self._armed = clock.callLater(delay, self._fire)  # the same sum as `due`: never a moment late
        return self.arm(Timer(self), due, call, args)  # type: ignore[return-value]

    def call_at(self, due: float, call: Callable[..., Any], *args: Any) -> Timer:
        """Run ``call(*args)`` once the clock reaches `due`, unless cancelled first."""
        return self.arm(Timer(self), due, call, args)  # type: ignore[return-value]

    def arm(self, timer: Timed, due: float, call: Callable[..., Any], args: Tuple[Any, ...] = ()) -> Timed:
        """
        `call_at` with `timer` as the pending call (its ``_owner`` is this
        `Timers`): an object that is its own timer arms it again and again,
        each time once it ran or was cancelled.
        """
        timer._due = due
        timer._call = call
        timer._args = args
        self._seq = seq = self._seq + 1
        timer._seq = seq
        heappush(self._heap, (due, seq, timer))
        self._live += 1
        if due < self._armed_at:
            if self._armed is not None:
                self._armed.cancel()
            self._arm(due)
        return timer

    def __len__(self) -> int:
        """Timers pending (neither run nor cancelled)."""
        return self._live

    def _emptied(self) -> None:
        """The last pending timer was cancelled: nothing is kept, and no `DelayedCall` stays pending."""
        self._heap.clear()
        self._dead = 0
        self._disarm()

    def _compact(self) -> None:
        # (`_pending` inlined: it runs for every entry)
        heap = self._heap = [e for e in self._heap if e[2]._call is not None and e[2]._seq == e[1]]
        heapify(heap)
        self._dead = 0

    def _disarm(self) -> None:
        armed, self._armed = self._armed, None
        self._armed_at = inf
        if armed is not None and armed.active():
            armed.cancel()

    def _fire(self) -> None:
        """The earliest timer is due: run every timer due by now, then arm for the next."""
        limit = max(self.clock.seconds(), self._armed_at)
        self._armed = None
        self._armed_at = inf
        while self._heap and self._heap[0][0] <= limit:  # a call may compact or clear the heap: read it afresh
            entry = heappop(self._heap)
            if not _pending(entry):
                self._dead -= 1
                continue
            timer = entry[2]
            call = timer._call
            args = timer._args
            timer._call = None
            timer._args = ()
            self._live -= 1
            try:
                call(*args)
            except Exception:
                _log.failure("timer {call!r} failed", call=call)
        heap = self._heap
        while heap and not _pending(heap[0]):
            heappop(heap)
            self._dead -= 1
        if heap and heap[0][0] < self._armed_at:  # a call may have armed for a later timer of its own
            if self._armed is not None:
                self._armed.cancel()
            self._arm(heap[0][0])

    def _arm(self, due: float) -> None:
        """One `DelayedCall` at `due` (never after it: a clock advanced to `due` runs it)."""
        now = self.clock.seconds()
        delay = max(due - now, 0.0)
        while delay > 0.0 and now + delay > due:
            delay = nextafter(delay, 0.0)
        self._armed_at = due
        self._armed = self.clock.callLater(delay, self._fire)


def _pending(entry: Tuple[float, int, Timed]) -> bool:
    """Whether a heap entry is its timer's pending call (not cancelled, run, or armed anew since)."""
    timer = entry[2]
    return timer._call is not None and timer._seq == entry[1]
