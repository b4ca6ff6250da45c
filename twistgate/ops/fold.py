"""
Finished requests counted into the Prometheus counts and the rolling stats
in one loop (`RecordFold`).

The gateway folds its pending records in batches (`twistgate.ops.pending`)
into both sinks.  Each sink's loop re-read the same fields of every record
and resolved the same route; here one loop reads them once, and what only
depends on a request's kind (route, method, status, upstream, protocol:
the requests counter, the protocol counter, the route's stats series, the
status class, the error flag) is added once per kind and batch, not once
per request.  Every read of either sink folds first, so no read sees a
count in between.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twistgate.grpc import NAMES as GRPC_NAMES
from twistgate.ops.request_metrics import (
    LATENCY_BUCKETS, METHODS, NO_ROUTE, PROTOCOLS, RequestCounts, _add, _entry, _new_histogram, cache_label,
)
from twistgate.ops.stats import Stats, _kind, _Series

__all__ = ["RecordFold"]


class _Kind:
    """
    What one kind of request counts into, resolved at its first request;
    `count` holds its requests of the batch being folded until `settle`.
    """

    __slots__ = (
        "route", "count", "requests", "protocol", "duration", "bytes_out", "upstream_duration",
        "series", "status_class", "error",
    )  # fmt: skip

    def __init__(self, route: str) -> None:
        self.route = route
        self.count = 0
        self.requests: Optional[List[float]] = None  # the metrics' (None: no metrics)
        self.protocol: Optional[List[float]] = None
        self.duration: Any = None
        self.bytes_out: Optional[List[float]] = None  # the route's, from its first request that sent a body
        self.upstream_duration: Any = None  # the upstream's, from its first response head
        self.series: Optional[_Series] = None  # the stats' (None: no stats)
        self.status_class = ""
        self.error = False


class RecordFold:
    """
    Counts `ExchangeRecord`s into `counts` and `stats` (either may be None)
    in one loop.  A new series is ``_created`` when its first request
    finished.
    """

    def __init__(self, counts: Optional[RequestCounts], stats: Optional[Stats]) -> None:
        self.counts = counts
        self.stats = stats
        #: (route, method, status, upstream, protocol), or (route, status) without metrics, -> `_Kind`:
        #: only kinds of bounded labels are kept (`_kind`).
        self.kinds: Dict[Tuple[Any, ...], _Kind] = {}

    def __call__(self, records: Sequence[Any]) -> None:
        counts, stats, kinds = self.counts, self.stats, self.kinds
        seen: List[_Kind] = []
        if stats is not None:
            total = stats._total
            total_samples = total.samples
        try:
            for record in records:
                finished = record.finished
                if counts is not None:
                    key = (record.route, record.method, record.status, record.upstream, record.protocol)
                else:
                    key = (record.route, record.status)  # (all the stats read: they take records with no more)
                kind = kinds.get(key)
                if kind is None:
                    kind = self._kind(key, finished)
                n = kind.count
                if not n:
                    seen.append(kind)
                kind.count = n + 1
                latency = record.latency  # a WebSocket's is its handshake, not the hours it stayed open
                if not latency > 0.0:
                    latency = 0.0
                state = record.state
                cached = state and ("cache" in state or "split" in state)  # (a traced request's holds its trace)
                if stats is not None:
                    sample = (finished, latency)
                    total_samples.append(sample)
                    kind.series.samples.append(sample)  # type: ignore[union-attr]
                    if cached and state.get("cache") is not None:
                        hit = cache_label(state["cache"]) == "hit"
                        series = kind.series
                        if hit:
                            total.cache_hits += 1
                            series.cache_hits += 1  # type: ignore[union-attr]
                        else:
                            total.cache_misses += 1
                            series.cache_misses += 1  # type: ignore[union-attr]
                if counts is None:
                    continue
                route = kind.route
                histogram = kind.duration
                histogram.buckets[bisect_left(LATENCY_BUCKETS, latency)] += 1  # le is inclusive, as Prometheus's
                histogram.total += latency
                if record.bytes_in:
                    _add(counts.bytes_in, route, record.bytes_in, finished)
                sent = record.bytes_out
                if sent:  # (nearly every request sends a body)
                    found = kind.bytes_out
                    if found is None:
                        found = kind.bytes_out = _entry(counts.bytes_out, route, finished)
                    found[0] += sent
                upstream = record.upstream
                if upstream is not None:
                    head = record.upstream_head_seconds
                    if head is not None:
                        histogram = kind.upstream_duration
                        if histogram is None:
                            histogram = kind.upstream_duration = (
                                counts.upstream_duration.get(upstream)
                                or _new_histogram(counts.upstream_duration, upstream, finished)
                            )
                        if not head > 0.0:
                            head = 0.0
                        histogram.buckets[bisect_left(LATENCY_BUCKETS, head)] += 1
                        histogram.total += head
                    if record.attempts > 1:
                        _add(counts.retries, upstream, record.attempts - 1, finished)
                error = record.error
                if error is not None:
                    if error == "rate_limited":
                        _add(counts.rate_limited, route, 1, finished)
                    elif error == "unauthorized" or error == "forbidden":
                        _add(counts.auth_rejected, (route, error), 1, finished)
                if cached:
                    result = state.get("cache")
                    if result is not None:
                        _add(counts.cache, (route, cache_label(result)), 1, finished)
                    arm = state.get("split")
                    if arm is not None:
                        _add(counts.split, (route, arm), 1, finished)
                if record.client_gone:
                    _add(counts.client_gone, route, 1, finished)
                grpc_status = record.grpc_status
                if grpc_status is not None:
                    _add(counts.grpc_calls, (route, GRPC_NAMES.get(grpc_status, "other")), 1, finished)
        finally:  # (each kind seen is settled, or its count would wait for a batch that never lists it)
            for kind in seen:
                self._settle(kind)

    def _settle(self, kind: _Kind) -> None:
        """Add a kind's requests of the batch to what counts them (once per kind and batch)."""
        n, kind.count = kind.count, 0
        if kind.requests is not None:
            kind.requests[0] += n
            kind.protocol[0] += n  # type: ignore[index]
        series = kind.series
        if series is not None:
            total = self.stats._total  # type: ignore[union-attr]
            series.count += n
            total.count += n
            klass = kind.status_class
            series.status[klass] = series.status.get(klass, 0) + n
            total.status[klass] = total.status.get(klass, 0) + n
            if kind.error:
                series.errors += n
                total.errors += n

    def _kind(self, key: Tuple[Any, ...], finished: float) -> _Kind:
        """
        The series a request of ``key``'s kind counts into (created as its
        first request finished, when new).  Kept for the next request of the
        kind when its labels are bounded (a known method and protocol).
        """
        counts, stats = self.counts, self.stats
        if counts is not None:
            route, method, status, _, protocol = key
            bounded = method in METHODS and protocol in PROTOCOLS
        else:
            (route, status), bounded = key, True
        if route is None:
            route = NO_ROUTE
        kind = _Kind(route)
        if counts is not None:
            kind.requests = _entry(counts.requests, (route, method if method in METHODS else "OTHER", status), finished)
            kind.protocol = _entry(counts.protocols, protocol if protocol in PROTOCOLS else "other", finished)
            kind.duration = counts.duration.get(route) or _new_histogram(counts.duration, route, finished)
        if stats is not None:
            routes = stats._routes
            series = kind.series = routes.get(route)
            if series is None:
                series = kind.series = routes[route] = _Series(stats.max_samples)
            kind.status_class, kind.error = _kind(status)
        if bounded:
            self.kinds[key] = kind
        return kind
