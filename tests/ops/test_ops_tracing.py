"""Trace context propagation through a whole in-memory gateway, and span export (OTLP/HTTP JSON)."""

from __future__ import annotations

import json
from typing import Any, List

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from tests.ops.helpers import EchoTrace, yaml
from twistgate.config import load_text
from twistgate.ops.otlp import OTLPExporter
from twistgate.ops.settings import TracingSettings
from twistgate.headers import Headers
from twistgate.ops.tracing import Span, Tracer
from twistgate.testing import GatewayHarness

CONFIG = yaml(
    """
    listeners: [{name: p, endpoint: "tcp:0"}]
    upstreams: {app: {targets: [{url: "http://app:80"}]}}
    routes:
      - {name: r, path: "/*", upstream: app}
    """
)
INCOMING = "00-12345678901234567890123456789012-1234567890123456-01"


def gateway(extra: str = "") -> Any:
    upstream = EchoTrace()
    gw = GatewayHarness(load_text(CONFIG + extra), upstream)
    return gw, upstream


def sent(upstream: EchoTrace) -> Any:
    (traceparent,), tracestate = upstream.seen[-1]
    return traceparent.decode(), tracestate


def test_incoming_trace_continues_with_a_new_parent_id():
    gw, upstream = gateway()
    gw.request("GET", "http://gw/a", headers={"traceparent": INCOMING, "tracestate": "foo=1,bar=2"})
    traceparent, tracestate = sent(upstream)
    version, trace_id, parent_id, flags = traceparent.split("-")
    assert (version, trace_id, flags) == ("00", "12345678901234567890123456789012", "01")
    assert parent_id != "1234567890123456" and len(parent_id) == 16
    assert tracestate == [b"foo=1,bar=2"]


def test_missing_or_invalid_traceparent_starts_a_new_trace_and_drops_tracestate():
    gw, upstream = gateway()
    gw.request("GET", "http://gw/a")
    first = sent(upstream)[0].split("-")[1]
    gw.request("GET", "http://gw/a", headers={"traceparent": "00-00000000000000000000000000000000-1234567890123456-01", "tracestate": "foo=1"})
    traceparent, tracestate = sent(upstream)
    assert traceparent.split("-")[1] not in (first, "0" * 32)
    assert tracestate is None


def test_duplicated_traceparent_restarts_the_trace():
    gw, upstream = gateway()
    headers = [("traceparent", INCOMING), ("traceparent", INCOMING.replace("12-", "11-", 1))]
    d = gw.client.request("GET", "http://gw/a", headers={"traceparent": [h[1] for h in headers]})
    gw.flush()
    assert sent(upstream)[0].split("-")[1] != "12345678901234567890123456789012"
    assert d.called


def test_unsampled_flag_is_kept_and_unknown_flags_are_zeroed():
    gw, upstream = gateway()
    gw.request("GET", "http://gw/a", headers={"traceparent": INCOMING[:-2] + "fe"})
    assert sent(upstream)[0].endswith("-00")


def test_every_request_gets_its_own_parent_id():
    gw, upstream = gateway()
    for _ in range(3):
        gw.request("GET", "http://gw/a", headers={"traceparent": INCOMING})
    parents = {tp[0].split(b"-")[2] for tp, _ in upstream.seen}
    assert len(parents) == 3


def test_propagate_false_leaves_headers_alone():
    gw, upstream = gateway("tracing: {propagate: false}\n")
    gw.request("GET", "http://gw/a", headers={"traceparent": INCOMING})
    assert sent(upstream)[0] == INCOMING


class CollectorSpy:
    """A treq-like client recording OTLP posts; answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.posts: List[Any] = []
        self.status = status
        self.pending: List[Deferred] = []
        self.hold = False

    def post(self, url: str, data: bytes, headers: Any, timeout: float, reactor: Any, allow_redirects: bool) -> Deferred:
        self.posts.append((url, json.loads(data), headers, timeout))
        response = _Response(self.status)
        if self.hold:
            d: Deferred = Deferred()
            self.pending.append((d, response))
            return d
        return succeed(response)


class _Response:
    def __init__(self, code: int) -> None:
        self.code = code

    def content(self) -> Deferred:
        return succeed(b"{}")


def spans_of(post: Any) -> List[dict]:
    return post[1]["resourceSpans"][0]["scopeSpans"][0]["spans"]


def test_one_span_per_request_and_per_attempt_exported_as_otlp_json():
    gw, upstream = gateway(
        'tracing: {otlp_endpoint: "http://collector:4318", service_name: edge, export_interval: 5s, headers: {Authorization: "Bearer x"}}\n'
    )
    tracer = gw.generation.services.tracer
    spy = tracer.exporter.http_client = CollectorSpy()
    gw.generation.start()
    gw.clock.advance(100)
    gw.request("GET", "http://gw/a?secret=1", headers={"traceparent": INCOMING})
    assert spy.posts == []  # batched: nothing until the timer
    gw.clock.advance(5)
    (url, body, headers, timeout), = spy.posts
    assert url == "http://collector:4318/v1/traces"
    assert headers[b"Content-Type"] == [b"application/json"] and headers[b"Authorization"] == [b"Bearer x"]
    resource = body["resourceSpans"][0]["resource"]["attributes"]
    assert {"key": "service.name", "value": {"stringValue": "edge"}} in resource
    attempt, server = sorted(spans_of(spy.posts[0]), key=lambda s: s["kind"], reverse=True)
    assert server["kind"] == 2 and attempt["kind"] == 3
    assert server["traceId"] == attempt["traceId"] == "12345678901234567890123456789012"
    assert server["parentSpanId"] == "1234567890123456"
    assert attempt["parentSpanId"] == server["spanId"]
    _, upstream_parent = sent(upstream)[0].split("-")[1:3]
    assert upstream_parent == attempt["spanId"]  # the upstream's parent is the attempt span
    assert server["startTimeUnixNano"] == "100000000000"
    attrs = {a["key"]: a["value"] for a in server["attributes"]}
    assert attrs["http.route"] == {"stringValue": "r"}
    assert attrs["http.response.status_code"] == {"intValue": "200"}
    assert attrs["url.path"] == {"stringValue": "/a"}  # never the query
    assert server["status"] == {"code": 0}


def test_unsampled_requests_export_nothing():
    gw, upstream = gateway('tracing: {otlp_endpoint: "http://collector:4318/v1/traces", sample_ratio: 0}\n')
    spy = gw.generation.services.tracer.exporter.http_client = CollectorSpy()
    gw.generation.start()
    gw.request("GET", "http://gw/a")
    gw.request("GET", "http://gw/a", headers={"traceparent": INCOMING[:-2] + "00"})
    gw.clock.advance(10)
    assert spy.posts == []
    assert sent(upstream)[0].endswith("-00")


def _span(i: int) -> Span:
    return Span(trace_id="1" * 32, span_id=f"{i + 1:016x}", parent_id=None, name="s", kind=2, start=1.0, end=2.0, attributes=[])


def test_exporter_queue_is_bounded_and_drops_are_counted():
    dropped: List[int] = []
    settings = TracingSettings(otlp_endpoint="http://c/v1/traces", batch_size=2, queue_size=3)
    spy = CollectorSpy()
    spy.hold = True
    exporter = OTLPExporter(settings, Clock(), spy, on_drop=dropped.append)
    for i in range(8):
        exporter.add(_span(i))
    # one batch of 2 went out at once (batch full) and is still in flight; 3 queued; 3 dropped
    assert len(spy.posts) == 1 and len(spans_of(spy.posts[0])) == 2
    assert len(exporter.queue) == 3 and sum(dropped) == 3
    d, response = spy.pending.pop()
    d.callback(response)
    assert len(spy.posts) == 2  # the next full batch follows when the first is settled


def test_failed_export_is_dropped_not_retried_and_never_raises():
    results: List[Any] = []
    settings = TracingSettings(otlp_endpoint="http://c/v1/traces", batch_size=10)
    spy = CollectorSpy(status=503)
    exporter = OTLPExporter(settings, Clock(), spy, on_export=lambda n, ok: results.append((n, ok)))
    exporter.add(_span(0))
    exporter.flush()
    assert results == [(1, False)] and not exporter.queue and exporter.sending is None


def test_stop_sends_what_is_queued():
    settings = TracingSettings(otlp_endpoint="http://c/v1/traces", batch_size=10, export_interval=60)
    clock, spy = Clock(), CollectorSpy()
    exporter = OTLPExporter(settings, clock, spy)
    exporter.start()
    exporter.add(_span(0))
    exporter.stop()
    assert len(spy.posts) == 1
    assert clock.getDelayedCalls() == []


def test_a_new_trace_reads_its_ids_from_the_value_sent_upstream():
    """`NewTrace` (every new trace when all are sampled): the same ids as the traceparent it sent."""
    from twistgate.ops.tracing import NewTrace

    tracer = Tracer(TracingSettings(), Clock())
    tracer.batched = True  # (as on CPython: PyPy begins a TraceContext per request)
    headers = Headers()
    headers.raw[b"Tracestate"] = [b"foo=1"]
    context = tracer.begin(headers)
    (value,) = headers.raw[b"Traceparent"]
    assert b"Tracestate" not in headers.raw
    assert value == f"00-{context.trace_id}-{context.span_id}-01".encode()
    assert (context.parent_id, context.flags, context.sampled, context.tracestate) == (None, 1, True, None)
    assert context == NewTrace(value) and context != NewTrace(tracer.begin(Headers()).traceparent)
    assert repr(context) == f"NewTrace(trace_id={context.trace_id!r}, span_id={context.span_id!r})"


def test_new_traces_are_batched_only_when_every_trace_is_sampled():
    assert Tracer(TracingSettings(sample_ratio=0.5), Clock()).batched is False
    unsampled = Tracer(TracingSettings(sample_ratio=0.0), Clock())
    headers = Headers()
    context = unsampled.begin(headers)
    assert headers.raw[b"Traceparent"] == [f"00-{context.trace_id}-{context.span_id}-00".encode()]


class _Request:
    """What `Tracer.begin_prepared` reads and sets on a `ProxyRequest`."""

    def __init__(self, raw: Any) -> None:
        self.headers = Headers()
        self.headers.raw = raw
        self.state: Any = {}
        self.prepared_fields = b""


FORWARDING = b"X-Forwarded-For: 10.0.0.1\r\nVia: 1.1 twistgate\r\n"


def test_a_bare_routes_new_trace_goes_as_the_last_ready_line():
    """`begin_prepared`: the forwarding lines, then the trace's; the ids read back from the line sent."""
    for batched in (True, False):
        tracer = Tracer(TracingSettings(), Clock())
        tracer.batched = batched  # (CPython's batch, and PyPy's per-request context)
        request = _Request({b"User-Agent": [b"t"], b"Tracestate": [b"foo=1"]})
        tracer.begin_prepared(request, FORWARDING)
        context = request.state["trace"]
        assert request.headers.raw == {b"User-Agent": [b"t"]}
        assert request.prepared_fields == FORWARDING + f"Traceparent: 00-{context.trace_id}-{context.span_id}-01\r\n".encode()
        assert context.parent_id is None and context.sampled and context.trace_id.strip("0")


def test_a_bare_route_continues_the_clients_trace_in_its_ready_line():
    tracer = Tracer(TracingSettings(), Clock())
    tracer.batched = True
    request = _Request({b"Traceparent": [INCOMING.encode()], b"Tracestate": [b"foo=1"]})
    tracer.begin_prepared(request, FORWARDING)
    context = request.state["trace"]
    assert (context.trace_id, context.parent_id) == (INCOMING[3:35], INCOMING[36:52])
    assert request.headers.raw == {b"Tracestate": [b"foo=1"]}
    assert request.prepared_fields == FORWARDING + f"Traceparent: 00-{context.trace_id}-{context.span_id}-01\r\n".encode()
