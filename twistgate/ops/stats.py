"""
Rolling statistics for the admin API and the dashboard: counts since start,
and over a sliding window the request rate and p50/p95/p99 latency, per
route and for the whole gateway.

Observing costs an append to a bounded deque; percentiles are computed only
when someone asks (an admin request), by sorting at most `max_samples`
durations per route.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from twistgate.ops.metrics import NO_ROUTE, status_class

WINDOW = 300.0  # seconds of samples kept for the percentiles
RATE_WINDOW = 10.0  # seconds the "requests per second" figure averages over
MAX_SAMPLES = 4096  # per route: bounds memory and the cost of a sort


def _kind(status: int) -> Tuple[str, bool]:
    """A status's class and whether it counts as an error (5xx, or no answer)."""
    return status_class(status), status >= 500 or status == 0


def percentile(ordered: List[float], p: float) -> Optional[float]:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


class _Series:
    """One route's (or the gateway's) counts and recent samples."""

    __slots__ = ("count", "status", "errors", "cache_hits", "cache_misses", "samples")

    def __init__(self, max_samples: int) -> None:
        self.count = 0
        self.status: Dict[str, int] = {}
        self.errors = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.samples: Deque[Tuple[float, float]] = deque(maxlen=max_samples)  # (finished, duration)

    def export(self) -> Dict[str, Any]:
        """Counts and raw samples, for adding up several processes' series (`merge`)."""
        return {
            "count": self.count, "status": self.status, "errors": self.errors,
            "cache_hits": self.cache_hits, "cache_misses": self.cache_misses,
            "samples": [[t, d] for t, d in self.samples],
        }

    def merge(self, exported: Dict[str, Any]) -> None:
        self.count += int(exported["count"])
        for klass, n in exported["status"].items():
            self.status[klass] = self.status.get(klass, 0) + int(n)
        self.errors += int(exported["errors"])
        self.cache_hits += int(exported["cache_hits"])
        self.cache_misses += int(exported["cache_misses"])
        merged = sorted(list(self.samples) + [(float(t), float(d)) for t, d in exported["samples"]])
        self.samples = deque(merged, maxlen=(self.samples.maxlen or 0) + len(exported["samples"]))

    def summary(self, now: float, window: float) -> Dict[str, Any]:
        recent = [d for t, d in self.samples if t >= now - window]
        recent.sort()
        rate_from = now - RATE_WINDOW
        in_rate = sum(1 for t, _ in self.samples if t >= rate_from)
        lookups = self.cache_hits + self.cache_misses
        return {
            "requests": self.count,
            "errors": self.errors,
            "status": dict(sorted(self.status.items())),
            "rate_per_second": round(in_rate / RATE_WINDOW, 3),
            "latency_ms": {
                name: (round(value * 1000.0, 3) if value is not None else None)
                for name, value in (
                    ("p50", percentile(recent, 50)),
                    ("p95", percentile(recent, 95)),
                    ("p99", percentile(recent, 99)),
                )
            },
            "samples": len(recent),
            "cache": {
                "hits": self.cache_hits,
                "misses": self.cache_misses,
                "hit_rate": round(self.cache_hits / lookups, 4) if lookups else None,
            },
        }


class Stats:
    """
    Counts and rolling latency per route, kept across reloads.  `before_read`,
    when set, runs before anyone reads `total` or `routes`: it folds the
    requests still pending (`twistgate.ops.pending`), so every read is exact.
    """

    def __init__(self, clock: Any, *, window: float = WINDOW, max_samples: int = MAX_SAMPLES) -> None:
        self.clock = clock
        self.window = window
        self.max_samples = max_samples
        self._total = _Series(max_samples)
        self._routes: Dict[str, _Series] = {}
        self.before_read: Optional[Callable[[], None]] = None
        #: Counts `observe_all`'s records (made at its first call).
        self.fold: Any = None

    @property
    def total(self) -> _Series:
        if self.before_read is not None:
            self.before_read()
        return self._total

    @property
    def routes(self) -> Dict[str, _Series]:
        if self.before_read is not None:
            self.before_read()
        return self._routes

    def observe(self, record: Any) -> None:
        self.observe_all((record,))

    def observe_all(self, records: Sequence[Any]) -> None:
        """
        Count finished requests (`ExchangeRecord`s), in one loop
        (`twistgate.ops.fold.RecordFold`: the gateway folds its batches
        into these stats and the metrics together).
        """
        if self.fold is None:
            from twistgate.ops.fold import RecordFold  # (which imports this module)

            self.fold = RecordFold(None, self)
        self.fold(records)

    def export(self) -> Dict[str, Any]:
        """Everything `merged` needs to add this process's stats to others'."""
        return {"total": self.total.export(), "routes": {name: series.export() for name, series in self.routes.items()}}

    @classmethod
    def merged(cls, clock: Any, exports: List[Dict[str, Any]]) -> "Stats":
        """The stats of several processes (workers) as one: counts added, samples pooled."""
        stats = cls(clock)
        for exported in exports:
            stats._total.merge(exported["total"])
            for name, series in exported["routes"].items():
                mine = stats._routes.get(name)
                if mine is None:
                    mine = stats._routes[name] = _Series(stats.max_samples)
                mine.merge(series)
        return stats

    def snapshot(self) -> Dict[str, Any]:
        now = self.clock.seconds()
        return {
            "window_seconds": self.window,
            "rate_window_seconds": RATE_WINDOW,
            "total": self.total.summary(now, self.window),
            "routes": {
                (name if name != NO_ROUTE else "(no route)"): series.summary(now, self.window)
                for name, series in sorted(self.routes.items())
            },
        }
