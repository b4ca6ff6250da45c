"""
The per-request Prometheus metrics, counted in plain Python and exposed when
scraped.

prometheus_client's ``labels(...).inc()`` takes a lock and walks a few
calls per sample, and a request touched about eight samples: ~20 us per
request.  Here a finished request costs a few dict and attribute updates on
plain numbers (`RequestCounts.observe`), and `RequestCounts.collect` turns
them into the same families, with the same names, help texts, labels,
buckets and ``_created`` samples as the `Counter` and `Histogram` objects
they replace: a scrape (or promtool) cannot tell the difference.  Label
values stay bounded as before: methods are folded into a fixed set,
statuses into classes (at scrape time, from the raw status code).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import prometheus_client.metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

__all__ = ["CACHE_RESULTS", "LATENCY_BUCKETS", "METHODS", "NO_ROUTE", "PROTOCOLS", "RequestCounts", "cache_label", "status_class"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CACHE_RESULTS = frozenset({"hit", "miss", "stale", "bypass", "expired", "revalidated"})
PROTOCOLS = frozenset({"HTTP/1.0", "HTTP/1.1", "HTTP/2"})
NO_ROUTE = ""  # the route label of requests no route matched
_BUCKET_LABELS = tuple(floatToGoString(b) for b in LATENCY_BUCKETS) + ("+Inf",)

Counts = Dict[Any, List[float]]  # label values -> [value, created]


_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")


def status_class(status: int) -> str:
    """``2xx``...``5xx``; ``none`` when the client left before any answer."""
    return _CLASSES[status // 100] if 100 <= status < 600 else "none"


def cache_label(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).lower()
    return text if text in CACHE_RESULTS else "other"


def _add(counts: Counts, key: Any, amount: float, now: float) -> None:
    found = counts.get(key)
    if found is None:
        counts[key] = [amount, now]
    else:
        found[0] += amount


class _Histogram:
    """One histogram series: a count per bucket (not cumulative until scraped), the sum, when it began."""

    __slots__ = ("buckets", "total", "created")

    def __init__(self, created: float) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.created = created


def _entry(counts: Counts, key: Any, now: float, amount: float = 0) -> List[float]:
    """``counts[key]`` (``[value, created]``), created at ``now`` when new."""
    found = counts.get(key)
    if found is None:
        found = counts[key] = [amount, now]
    return found


def _new_histogram(histograms: Dict[str, _Histogram], label: str, now: float) -> _Histogram:
    histogram = histograms[label] = _Histogram(now)
    return histogram


class RequestCounts:
    """
    The counters and histograms fed by every finished request (see the
    module docstring).  `now()` is the gateway's clock (a new series is
    ``_created`` when its first request finished).  `before_read`, when set,
    runs before every scrape: it folds the requests still pending
    (`twistgate.ops.pending`), so a scrape's counts are exact.
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.before_read: Optional[Callable[[], None]] = None
        self.requests: Dict[Tuple[str, str, int], List[float]] = {}  # (route, method, status)
        self.duration: Dict[str, _Histogram] = {}
        self.upstream_duration: Dict[str, _Histogram] = {}
        self.bytes_in: Counts = {}
        self.bytes_out: Counts = {}
        self.retries: Counts = {}
        self.rate_limited: Counts = {}
        self.auth_rejected: Counts = {}
        self.cache: Counts = {}
        self.client_gone: Counts = {}
        self.protocols: Counts = {}
        self.grpc_calls: Counts = {}
        self.split: Counts = {}
        #: Counts `observe_all`'s records (made at its first call).
        self.fold: Any = None

    def observe(self, record: Any) -> None:
        """Count one finished request (an `ExchangeRecord`)."""
        self.observe_all((record,))

    def observe_all(self, records: Sequence[Any]) -> None:
        """
        Count finished requests (`ExchangeRecord`s), in one loop
        (`twistgate.ops.fold.RecordFold`: the gateway folds its batches
        into these counts and the stats together).  A new series is
        ``_created`` when its first request finished.
        """
        if self.fold is None:
            from twistgate.ops.fold import RecordFold  # (which imports this module)

            self.fold = RecordFold(self, None)
        self.fold(records)

    @property
    def cells(self) -> Dict[Tuple[Any, ...], Any]:
        """The kinds of request `observe_all` remembers (`RecordFold.kinds`: bounded labels only)."""
        return self.fold.kinds if self.fold is not None else {}

    # -- exposition -------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return [Metric(name, help_text, kind) for name, help_text, kind, _ in _FAMILIES]

    def collect(self) -> Iterator[Metric]:
        if self.before_read is not None:
            self.before_read()
        created = getattr(prometheus_client.metrics, "_use_created", True)  # PROMETHEUS_DISABLE_CREATED_SERIES
        for name, help_text, kind, labels in _FAMILIES:
            family = Metric(name, help_text, kind)
            source = getattr(self, _SOURCE[name])
            if kind == "histogram":
                for value, histogram in source.items():
                    _histogram_samples(family, {labels[0]: value}, histogram, created)
            else:
                series = _requests(source) if name == "twistgate_requests" else source
                for values, (count, since) in series.items():
                    labelled = dict(zip(labels, values if isinstance(values, tuple) else (values,)))
                    family.add_sample(name + "_total", labelled, float(count))
                    if created:
                        family.add_sample(name + "_created", labelled, since)
            yield family


def _requests(raw: Dict[Tuple[str, str, int], List[float]]) -> Dict[Tuple[str, str, str], List[float]]:
    """Requests by (route, method, status class), from the raw status codes."""
    folded: Dict[Tuple[str, str, str], List[float]] = {}
    for (route, method, status), (count, since) in raw.items():
        key = (route, method, status_class(status))
        found = folded.get(key)
        if found is None:
            folded[key] = [count, since]
        else:
            found[0] += count
            found[1] = min(found[1], since)
    return folded


def _histogram_samples(family: Metric, labels: Dict[str, str], histogram: _Histogram, created: bool) -> None:
    name = family.name
    cumulative = 0
    for bound, count in zip(_BUCKET_LABELS, histogram.buckets):
        cumulative += count
        family.add_sample(name + "_bucket", {**labels, "le": bound}, float(cumulative))
    family.add_sample(name + "_count", labels, float(cumulative))
    family.add_sample(name + "_sum", labels, histogram.total)
    if created:
        family.add_sample(name + "_created", labels, histogram.created)


#: (name, help, type, label names), in the order they were always exposed.
_FAMILIES = (
    ("twistgate_requests", "Requests answered, by route, method and status class.", "counter",
     ("route", "method", "status_class")),
    ("twistgate_request_duration_seconds", "Time from the request head to the end of the response.", "histogram",
     ("route",)),
    ("twistgate_upstream_duration_seconds", "Time from the request head to the upstream's response head.", "histogram",
     ("upstream",)),
    ("twistgate_request_body_bytes", "Request body bytes received.", "counter", ("route",)),
    ("twistgate_response_body_bytes", "Response body bytes sent.", "counter", ("route",)),
    ("twistgate_upstream_retries", "Upstream attempts beyond the first.", "counter", ("upstream",)),
    ("twistgate_rate_limited", "Requests refused with 429.", "counter", ("route",)),
    ("twistgate_auth_rejected", "Requests refused by authentication (401) or authorisation (403).", "counter",
     ("route", "reason")),
    ("twistgate_cache_lookups", "Cache results (hit, miss, stale, bypass...).", "counter", ("route", "result")),
    ("twistgate_client_disconnects", "Requests whose client left before the response was complete.", "counter",
     ("route",)),
    ("twistgate_requests_by_protocol", "Requests answered, by the client's protocol (HTTP/1.1, HTTP/2).", "counter",
     ("protocol",)),
    ("twistgate_grpc_calls", "gRPC calls answered, by route and gRPC status (OK, UNAVAILABLE...).", "counter",
     ("route", "grpc_status")),
    ("twistgate_split_requests", "Requests of split routes, by route and the arm (upstream) chosen.", "counter",
     ("route", "upstream")),
)  # fmt: skip

_SOURCE = {
    "twistgate_requests": "requests",
    "twistgate_request_duration_seconds": "duration",
    "twistgate_upstream_duration_seconds": "upstream_duration",
    "twistgate_request_body_bytes": "bytes_in",
    "twistgate_response_body_bytes": "bytes_out",
    "twistgate_upstream_retries": "retries",
    "twistgate_rate_limited": "rate_limited",
    "twistgate_auth_rejected": "auth_rejected",
    "twistgate_cache_lookups": "cache",
    "twistgate_client_disconnects": "client_gone",
    "twistgate_requests_by_protocol": "protocols",
    "twistgate_grpc_calls": "grpc_calls",
    "twistgate_split_requests": "split",
}
