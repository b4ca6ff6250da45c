"""
The last 15 minutes of the gateway's figures, for the dashboard's charts and
``GET /admin/stats/history``: per route and in total, in 10-second buckets
kept in a bounded ring.

Nothing is added to a request's path.  A `LoopingCall` on the gateway's clock
reads what `twistgate.ops.stats.Stats` counts already (requests, errors,
cache hits and misses) and the latency samples finished since its last read,
every ``sample_every`` seconds (2), into the bucket open now; an admin request
reads once more first, so the open bucket is always current.  Latency is kept
per bucket as a log-scale histogram (bins 8 % wide, so a percentile is
within 4 % of the exact one): histograms of several workers add up exactly,
which averaged percentiles would not (`twistgate.workers.hosthistory`).

Buckets end on multiples of the bucket length of the clock (wall time), so
the buckets of every worker of a host line up.  Percentiles come from the
`Stats` samples, which keep the last 4096 requests per route: above about
400 requests per second on one route, a bucket's percentiles are those of
its latest requests (counts stay exact).
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import attrs
from twisted.internet.task import LoopingCall

from twistgate.ops.metrics import NO_ROUTE

__all__ = ["Bucket", "Figures", "History", "HistoryRing", "HistorySettings", "NO_ROUTE_NAME", "render"]

#: How ``NO_ROUTE`` (requests no route matched) is spelled in answers, as in ``/admin/stats``.
NO_ROUTE_NAME = "(no route)"

_FLOOR = 1e-4  # seconds: everything faster is one bin
_BASE = 1.08
_LOG_BASE = math.log(_BASE)


@attrs.frozen
class HistorySettings:
    """Bucket length, how much is kept, and how often the counters are read (all seconds)."""

    bucket: float = 10.0
    span: float = 900.0
    sample_every: float = 2.0

    @property
    def size(self) -> int:
        return max(1, int(round(self.span / self.bucket)))


def latency_bin(seconds: float) -> int:
    """The histogram bin of a duration: bin i > 0 holds [F*B^(i-1), F*B^i)."""
    if seconds <= _FLOOR:
        return 0
    return 1 + int(math.log(seconds / _FLOOR) / _LOG_BASE)


def bin_seconds(index: int) -> float:
    """The value a bin stands for: its geometric middle."""
    if index <= 0:
        return _FLOOR
    return _FLOOR * _BASE ** (index - 0.5)


class Figures:
    """One series' counts in one bucket, and its latency histogram (bin -> requests)."""

    __slots__ = ("requests", "errors", "cache_hits", "cache_misses", "latency")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.latency: Dict[int, int] = {}

    def add(self, other: "Figures") -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        for index, count in other.latency.items():
            self.latency[index] = self.latency.get(index, 0) + count

    def percentile(self, p: float) -> Optional[float]:
        """Nearest-rank percentile in seconds (None without samples)."""
        total = sum(self.latency.values())
        if not total:
            return None
        rank = max(1, math.ceil(p / 100.0 * total))
        seen = 0
        for index in sorted(self.latency):
            seen += self.latency[index]
            if seen >= rank:
                return bin_seconds(index)
        return None  # pragma: no cover - rank <= total

    def export(self) -> Dict[str, Any]:
        """As JSON (for the supervisor to add workers' figures up)."""
        return {
            "requests": self.requests, "errors": self.errors, "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses, "latency": [[i, n] for i, n in sorted(self.latency.items())],
        }

    @classmethod
    def imported(cls, data: Dict[str, Any]) -> "Figures":
        figures = cls()
        figures.requests = int(data["requests"])
        figures.errors = int(data["errors"])
        figures.cache_hits = int(data["cache_hits"])
        figures.cache_misses = int(data["cache_misses"])
        figures.latency = {int(i): int(n) for i, n in data["latency"]}
        return figures

    def point(self, at: float, seconds: float) -> Dict[str, Any]:
        """The public point: rates per second, error and cache hit rates (0..1), p50/p99 in ms."""
        lookups = self.cache_hits + self.cache_misses
        p50, p99 = self.percentile(50), self.percentile(99)
        return {
            "at": at,
            "requests": self.requests,
            "rate_per_second": round(self.requests / seconds, 3) if seconds > 0 else 0.0,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 4) if self.requests else None,
            "p50_ms": round(p50 * 1000.0, 3) if p50 is not None else None,
            "p99_ms": round(p99 * 1000.0, 3) if p99 is not None else None,
            "cache_hit_rate": round(self.cache_hits / lookups, 4) if lookups else None,
        }


class Bucket:
    """The figures of the bucket ending at ``end`` (seconds of the clock), total and per route."""

    __slots__ = ("end", "total", "routes")

    def __init__(self, end: float) -> None:
        self.end = end
        self.total = Figures()
        self.routes: Dict[str, Figures] = {}

    def route(self, name: str) -> Figures:
        figures = self.routes.get(name)
        if figures is None:
            figures = self.routes[name] = Figures()
        return figures

    def add(self, other: "Bucket") -> None:
        self.total.add(other.total)
        for name, figures in other.routes.items():
            self.route(name).add(figures)

    def export(self) -> Dict[str, Any]:
        return {
            "end": self.end, "total": self.total.export(),
            "routes": {name: figures.export() for name, figures in self.routes.items()},
        }

    @classmethod
    def imported(cls, data: Dict[str, Any]) -> "Bucket":
        bucket = cls(float(data["end"]))
        bucket.total = Figures.imported(data["total"])
        bucket.routes = {name: Figures.imported(f) for name, f in data["routes"].items()}
        return bucket


class HistoryRing:
    """The closed buckets of the last `span` seconds, by end time; at most ``settings.size`` of them."""

    def __init__(self, settings: HistorySettings) -> None:
        self.settings = settings
        self.buckets: Dict[float, Bucket] = {}

    def add(self, bucket: Bucket) -> None:
        """Keep `bucket`, adding it to one of the same end (another worker's); drop the oldest beyond the size."""
        mine = self.buckets.get(bucket.end)
        if mine is None:
            self.buckets[bucket.end] = bucket
        else:
            mine.add(bucket)
        while len(self.buckets) > self.settings.size:
            del self.buckets[min(self.buckets)]

    def since(self, end: float) -> List[Bucket]:
        """The buckets that ended after `end`, oldest first."""
        return [self.buckets[e] for e in sorted(self.buckets) if e > end]

    def latest(self) -> float:
        return max(self.buckets) if self.buckets else 0.0


def bucket_end(now: float, length: float) -> float:
    """The end of the bucket `now` falls in (a bucket holds (end - length, end])."""
    return (math.floor(now / length) + 1) * length


class History:
    """
    Samples a `Stats` into a `HistoryRing`: started with the gateway
    (`start`), read again by each admin request (`collect`).
    """

    def __init__(self, clock: Any, stats: Any, settings: HistorySettings = HistorySettings()) -> None:
        self.clock = clock
        self.stats = stats
        self.settings = settings
        self.ring = HistoryRing(settings)
        self.started = clock.seconds()
        self.open = Bucket(bucket_end(self.started, settings.bucket))
        #: Series name (None: the total) -> (requests, errors, cache hits, cache misses) at the last read.
        self._seen: Dict[Optional[str], Tuple[int, int, int, int]] = {}
        self._loop: Optional[LoopingCall] = None
        self._first: Any = None

    def start(self) -> None:
        """Read every `sample_every` seconds, on multiples of it (so bucket ends are read on time)."""
        if self._loop is not None:
            return
        self._loop = LoopingCall(self.collect)
        self._loop.clock = self.clock
        every = self.settings.sample_every
        delay = bucket_end(self.clock.seconds(), every) - self.clock.seconds()
        self._first = self.clock.callLater(delay, self._loop.start, every, True)

    def stop(self) -> None:
        if self._first is not None and self._first.active():
            self._first.cancel()
        self._first = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def collect(self) -> None:
        """Add what the counters moved since the last read to the open bucket; close it when its end passed."""
        now = self.clock.seconds()
        bucket = self.open
        self._read(None, self.stats.total, bucket)
        for name, series in list(self.stats.routes.items()):
            self._read(name, series, bucket)
        if now >= bucket.end:
            self.ring.add(bucket)
            self.open = Bucket(bucket_end(now, self.settings.bucket))

    def _read(self, name: Optional[str], series: Any, bucket: Bucket) -> None:
        seen = self._seen.get(name, (0, 0, 0, 0))
        now = (series.count, series.errors, series.cache_hits, series.cache_misses)
        if now == seen:
            return  # an idle series costs nothing in the bucket
        self._seen[name] = now
        if name is None:
            into = bucket.total
        else:
            into = bucket.route(NO_ROUTE_NAME if name == NO_ROUTE else name)
        into.requests += now[0] - seen[0]
        into.errors += now[1] - seen[1]
        into.cache_hits += now[2] - seen[2]
        into.cache_misses += now[3] - seen[3]
        # Every request counted appended one sample: the newest `fresh` are new since the last read.
        fresh = min(now[0] - seen[0], len(series.samples))
        latency = into.latency
        for _, duration in islice(reversed(series.samples), fresh):
            index = latency_bin(duration)
            latency[index] = latency.get(index, 0) + 1

    def export(self, since: float) -> Dict[str, Any]:
        """For the supervisor: the closed buckets that ended after `since`, and the open one as it is now."""
        self.collect()
        return {
            "bucket_seconds": self.settings.bucket,
            "closed": [b.export() for b in self.ring.since(since)],
            "open": self.open.export(),
        }

    def answer(self, routes: Iterable[str], selected: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """``GET /admin/stats/history`` (read now first)."""
        self.collect()
        return render(self.ring, self.open, self.clock.seconds(), routes, selected, self.started)


def render(
    ring: HistoryRing, open_bucket: Optional[Bucket], now: float, routes: Iterable[str],
    selected: Optional[Sequence[str]] = None, started: float = 0.0,
) -> Dict[str, Any]:
    """
    The public time series: one point per bucket from the oldest kept (at
    most `span` ago) to the open one (``"partial": true``, its rate over the
    time elapsed in it), every bucket present (zero when nothing happened),
    for the total and each of `routes` plus any route seen in the window;
    only the `selected` routes when given.  Rates count only the time since
    `started` (the first bucket is short).
    """
    settings = ring.settings
    length = settings.bucket
    current = open_bucket.end if open_bucket is not None else bucket_end(now, length)
    first = current - (settings.size - 1) * length
    kept = [e for e in ring.buckets if e >= first]
    start = min(kept) if kept else current
    ends = [start + i * length for i in range(int(round((current - start) / length)) + 1)]
    by_end = {e: ring.buckets[e] for e in kept}
    if open_bucket is not None:
        by_end[open_bucket.end] = open_bucket
    names = list(dict.fromkeys(routes))
    for bucket in by_end.values():
        names.extend(n for n in bucket.routes if n not in names)
    if selected is not None:
        names = [n for n in names if n in selected]
    empty = Figures()

    def series(pick: Any) -> List[Dict[str, Any]]:
        points = []
        for end in ends:
            bucket = by_end.get(end)
            figures = pick(bucket) if bucket is not None else empty
            partial = bucket is open_bucket and bucket is not None
            begin = max(end - length, started)
            seconds = max(1.0, min(end, now) - begin) if partial or begin > end - length else length
            point = (figures or empty).point(end, seconds)
            if partial:
                point["partial"] = True
            points.append(point)
        return points

    return {
        "bucket_seconds": length,
        "span_seconds": settings.span,
        "now": now,
        "total": series(lambda b: b.total),
        "routes": {name: series(lambda b, n=name: b.routes.get(n)) for name in names},
    }
