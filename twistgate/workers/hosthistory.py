"""
The host's 15-minute history, kept by the supervisor.

Each worker samples its own counters into its own ring
(`twistgate.ops.history`).  The supervisor asks every worker, every 2 s (the
workers' sampling period) and whenever ``/admin/stats/history`` is read, for
the buckets it closed since the last answer and its open one (``GET
/admin/_history?since=T`` on its private admin socket), and adds the closed
ones to its own ring.  Bucket ends are multiples of the bucket length of the
host's clock, so the workers' buckets line up, and their latency histograms
add up exactly: the host's p99 is the p99 of every request, not an average
of the workers'.  When a worker dies, the last open bucket it answered joins
the ring (so at most its last 2 s are lost), and a restarted worker's
buckets are new ones (the supervisor remembers the last bucket per process
id).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.defer import DeferredList, DeferredLock, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twistgate.ops.history import Bucket, HistoryRing, HistorySettings, render

__all__ = ["HostHistory"]

_log = Logger()


class HostHistory:
    """The supervisor's ring of the workers' buckets added up."""

    def __init__(
        self, clock: Any, slots: Callable[[], List[Any]], fetch: Callable[[Any, bytes], Any],
        settings: HistorySettings = HistorySettings(),
    ) -> None:
        """
        :param slots: the workers serving now (with ``.pid`` and ``.index``).
        :param fetch: ``(slot, path) -> Deferred`` of a worker's JSON answer.
        """
        self.clock = clock
        self.slots = slots
        self.fetch = fetch
        self.settings = settings
        self.ring = HistoryRing(settings)
        self.started = clock.seconds()
        self._seen: Dict[int, float] = {}  # worker pid -> end of the last bucket taken from it
        self._open: Dict[int, Bucket] = {}  # worker pid -> its open bucket as last answered
        self._lock = DeferredLock()
        self._loop: Optional[LoopingCall] = None

    def start(self) -> None:
        self._loop = LoopingCall(self.pull)
        self._loop.clock = self.clock
        self._loop.start(self.settings.sample_every, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def pull(self) -> Any:
        """Take the buckets the workers closed; fires with ``(open buckets, workers that answered)``."""
        return self._lock.run(self._pull)

    @inlineCallbacks
    def _pull(self) -> Any:
        slots = self.slots()
        asked = [self.fetch(slot, b"/admin/_history?since=%r" % self._seen.get(slot.pid, 0.0)) for slot in slots]
        answers = yield DeferredList(asked, consumeErrors=True)
        opened: List[Bucket] = []
        for slot, (ok, body) in zip(slots, answers):
            if not ok:
                _log.warn("worker {index} did not answer its history: {why}", index=slot.index, why=body.getErrorMessage())
                continue
            for raw in body["closed"]:
                bucket = Bucket.imported(raw)
                if bucket.end > self._seen.get(slot.pid, 0.0):
                    self.ring.add(bucket)
                    self._seen[slot.pid] = bucket.end
            current = Bucket.imported(body["open"])
            self._open[slot.pid] = current
            opened.append(current)
        alive = {slot.pid for slot in slots}
        for pid in [pid for pid in self._open if pid not in alive]:  # ended: keep what it had counted
            last = self._open.pop(pid)
            if last.end > self._seen.get(pid, 0.0):
                self.ring.add(last)
        self._seen = {pid: end for pid, end in self._seen.items() if pid in alive}
        return opened, sum(1 for ok, _ in answers if ok)

    @inlineCallbacks
    def answer(self, routes: List[str], selected: Optional[List[str]] = None) -> Any:
        """``GET /admin/stats/history`` for the host."""
        opened, workers = yield self.pull()
        ring, current = self._view(opened)
        body = render(ring, current, self.clock.seconds(), routes, selected, self.started)
        body["workers"] = workers
        return body

    def _view(self, opened: List[Bucket]) -> Tuple[HistoryRing, Optional[Bucket]]:
        """
        The ring with the open buckets on top: those of the newest end add up
        to the open one (with what a worker that died in it had counted); one
        a worker had not closed yet when another had
        (asked across a bucket's end) joins the closed bucket of its end, in
        a copy (the ring takes it when that worker closes it).
        """
        if not opened:
            return self.ring, None
        newest = max(b.end for b in opened)
        current = Bucket(newest)
        view = HistoryRing(self.settings)
        view.buckets = dict(self.ring.buckets)
        if newest in view.buckets:  # a worker that died in this bucket: what it had counted
            current.add(view.buckets.pop(newest))
        for bucket in opened:
            if bucket.end == newest:
                current.add(bucket)
                continue
            merged = Bucket(bucket.end)
            if bucket.end in view.buckets:
                merged.add(view.buckets[bucket.end])
            merged.add(bucket)
            view.buckets[bucket.end] = merged
        return view, current
