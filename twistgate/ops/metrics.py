"""
Prometheus metrics in a private `CollectorRegistry` (never the global one:
two gateways in one process, or a test, must not share counters).

Counters and histograms are fed by the exchange observer; the live state
(requests in flight, open connections, upstream health, breakers, config
generation) is read when scraped, by `LiveCollector`.  Label values are
bounded: route and upstream names and targets come from the configuration,
methods are folded into a fixed set, statuses into classes.  Raw paths and
client addresses are never labels.
"""

from __future__ import annotations

import platform
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import twisted
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import Resource

from twistgate import __version__
from twistgate.grpc import NAMES as GRPC_NAMES

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CACHE_RESULTS = frozenset({"hit", "miss", "stale", "bypass", "expired", "revalidated"})
BREAKER_STATES = ("closed", "open", "half_open")
NO_ROUTE = ""  # the route label of requests no route matched
PROTOCOLS = frozenset({"HTTP/1.0", "HTTP/1.1", "HTTP/2"})
HTTP2_ERRORS = frozenset(
    {
        "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
        "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
    }
)  # fmt: skip


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


def status_class(status: int) -> str:
    """``2xx``...``5xx``; ``none`` when the client left before any answer."""
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


def cache_label(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).lower()
    return text if text in CACHE_RESULTS else "other"


class GatewayMetrics:
    """The counters and histograms, shared by every generation of a gateway."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.requests = Counter(
            "twistgate_requests", "Requests answered, by route, method and status class.",
            ("route", "method", "status_class"), registry=r,
        )
        self.duration = Histogram(
            "twistgate_request_duration_seconds", "Time from the request head to the end of the response.",
            ("route",), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.upstream_duration = Histogram(
            "twistgate_upstream_duration_seconds", "Time from the request head to the upstream's response head.",
            ("upstream",), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.bytes_in = Counter("twistgate_request_body_bytes", "Request body bytes received.", ("route",), registry=r)
        self.bytes_out = Counter("twistgate_response_body_bytes", "Response body bytes sent.", ("route",), registry=r)
        self.retries = Counter("twistgate_upstream_retries", "Upstream attempts beyond the first.", ("upstream",), registry=r)
        self.rate_limited = Counter("twistgate_rate_limited", "Requests refused with 429.", ("route",), registry=r)
        self.auth_rejected = Counter(
            "twistgate_auth_rejected", "Requests refused by authentication (401) or authorisation (403).",
            ("route", "reason"), registry=r,
        )
        self.cache = Counter("twistgate_cache_lookups", "Cache results (hit, miss, stale, bypass...).", ("route", "result"), registry=r)
        self.client_gone = Counter(
            "twistgate_client_disconnects", "Requests whose client left before the response was complete.", ("route",), registry=r,
        )
        self.protocols = Counter(
            "twistgate_requests_by_protocol", "Requests answered, by the client's protocol (HTTP/1.1, HTTP/2).",
            ("protocol",), registry=r,
        )
        self.grpc_calls = Counter(
            "twistgate_grpc_calls", "gRPC calls answered, by route and gRPC status (OK, UNAVAILABLE...).",
            ("route", "grpc_status"), registry=r,
        )
        self.http2_connection_errors = Counter(
            "twistgate_http2_connection_errors",
            "HTTP/2 connections the gateway ended with a GOAWAY error, by RFC 9113 error code "
            "(ENHANCE_YOUR_CALM: rapid reset and other floods).",
            ("code",), registry=r,
        )
        self.stale_retries = Counter(
            "twistgate_upstream_stale_connection_retries",
            "Requests sent again on a fresh connection because the upstream had closed the pooled one.",
            ("upstream",), registry=r,
        )
        self.closed_by_upstream = Counter(
            "twistgate_upstream_connections_closed",
            "Pooled connections the upstream closed (idle timeout, Connection: close).",
            ("upstream",), registry=r,
        )
        self.connections_refused = Counter(
            "twistgate_connections_refused", "Client connections closed at once: limits.max_connections reached.",
            ("listener",), registry=r,
        )
        self.split = Counter(
            "twistgate_split_requests", "Requests of split routes, by route and the arm (upstream) chosen.",
            ("route", "upstream"), registry=r,
        )
        self.reloads = Counter("twistgate_config_reloads", "Configuration reloads, by result.", ("result",), registry=r)
        self.last_reload_ok = Gauge(
            "twistgate_config_last_reload_successful", "1 if the last reload succeeded (or none happened).", registry=r,
        )
        self.last_reload_time = Gauge(
            "twistgate_config_last_reload_success_timestamp_seconds", "When the serving configuration was loaded.", registry=r,
        )
        self.spans_dropped = Counter("twistgate_tracing_spans_dropped", "Spans dropped (queue full or export failed).", registry=r)
        self.spans_exported = Counter("twistgate_tracing_spans_exported", "Spans accepted by the OTLP collector.", registry=r)
        Info("twistgate_build", "The running build.", registry=r).info(
            {"version": __version__, "python": platform.python_version(), "twisted": twisted.__version__}
        )
        self.last_reload_ok.set(1)
        for result in ("success", "failure"):
            self.reloads.labels(result)
        # labels() costs a lock and a tuple per call: children are cached.
        self._children: Dict[Tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric),) + labels
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, record: Any) -> None:
        route = record.route if record.route is not None else NO_ROUTE
        child = self._child
        child(self.requests, route, method_label(record.method), status_class(record.status)).inc()
        child(self.duration, route).observe(max(record.latency, 0.0))
        if record.bytes_in:
            child(self.bytes_in, route).inc(record.bytes_in)
        if record.bytes_out:
            child(self.bytes_out, route).inc(record.bytes_out)
        if record.upstream is not None:
            if record.upstream_head_seconds is not None:
                child(self.upstream_duration, record.upstream).observe(max(record.upstream_head_seconds, 0.0))
            if record.attempts > 1:
                child(self.retries, record.upstream).inc(record.attempts - 1)
        error = record.error
        if error == "rate_limited":
            child(self.rate_limited, route).inc()
        elif error in ("unauthorized", "forbidden"):
            child(self.auth_rejected, route, error).inc()
        state = record.state
        if state:
            result = cache_label(state.get("cache"))
            if result is not None:
                child(self.cache, route, result).inc()
            arm = state.get("split")
            if arm is not None:
                child(self.split, route, arm).inc()
        if record.client_gone:
            child(self.client_gone, route).inc()
        child(self.protocols, record.protocol if record.protocol in PROTOCOLS else "other").inc()
        grpc_status = record.grpc_status
        if grpc_status is not None:
            child(self.grpc_calls, route, GRPC_NAMES.get(grpc_status, "other")).inc()

    def upstream_connection_event(self, event: str, upstream: str) -> None:
        """The forwarded hop's pool: ``stale_retry`` or ``closed_by_upstream`` on `upstream`'s connections."""
        metric = self.stale_retries if event == "stale_retry" else self.closed_by_upstream
        self._child(metric, upstream).inc()

    def http2_connection_error(self, code: str) -> None:
        """The HTTP/2 engine ended a connection with a GOAWAY carrying `code` (an RFC 9113 name)."""
        self._child(self.http2_connection_errors, code if code in HTTP2_ERRORS else "other").inc()


class LiveCollector:
    """Gauges read at scrape time from the running gateway (see `Operations`)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def describe(self) -> Iterable[Any]:
        return []  # unchecked collector: the families depend on the config

    def collect(self) -> Iterable[Any]:
        source = self.source
        inflight = GaugeMetricFamily("twistgate_requests_in_flight", "Requests being handled now, every generation.")
        inflight.add_metric([], source.in_flight())
        yield inflight
        connections = GaugeMetricFamily(
            "twistgate_open_connections", "Client connections open now, by listener.", labels=["listener"]
        )
        for name, count in sorted(source.connections.items()):
            connections.add_metric([name], count)
        yield connections
        generation = GaugeMetricFamily("twistgate_config_generation", "The serving configuration's generation (1 at start).")
        generation.add_metric([], source.number)
        yield generation
        live = GaugeMetricFamily("twistgate_config_generations_live", "Generations still serving (draining ones included).")
        live.add_metric([], len(source.generations))
        yield live
        healthy = GaugeMetricFamily(
            "twistgate_upstream_target_healthy", "1 if the target is considered healthy.", labels=["upstream", "target"]
        )
        target_inflight = GaugeMetricFamily(
            "twistgate_upstream_target_in_flight", "Requests in flight to the target.", labels=["upstream", "target"]
        )
        breaker = GaugeMetricFamily(
            "twistgate_upstream_breaker_state", "1 for the target's current circuit breaker state.",
            labels=["upstream", "target", "state"],
        )
        for upstream, target in source.targets():
            url = str(target.get("url"))
            healthy.add_metric([upstream, url], 1 if target.get("healthy", True) else 0)
            if target.get("in_flight") is not None:
                target_inflight.add_metric([upstream, url], target["in_flight"])
            state = target.get("breaker")
            if state is not None:
                state = str(state).replace("-", "_")
                for name in BREAKER_STATES:
                    breaker.add_metric([upstream, url, name], 1 if state == name else 0)
        yield healthy
        yield target_inflight
        yield breaker


class MetricsResource(Resource):
    """``GET /metrics``: the registry in the text format (or OpenMetrics when asked)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else None)
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return encoder(self.registry)

    render_HEAD = render_GET


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


Provider = Callable[[], Any]
