"""Prometheus metrics after known traffic, parsed back from the exposition."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.web.resource import Resource

from tests.ops.helpers import yaml
from twistgate.config import load_text
from twistgate.errors import Forbidden, RateLimited, Unauthorized
from twistgate.messages import Response
from twistgate.plugins import hookimpl
from twistgate.testing import GatewayHarness


class Upstream(Resource):
    isLeaf = True

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock

    def render(self, request: Any) -> bytes:
        if request.path == b"/boom":
            request.setResponseCode(503)
        return b"x" * 10


class Gatekeeper:
    """Refuses by path, like auth and rate limiting would; marks cache results."""

    def __init__(self, options: Any, context: Any) -> None:
        pass

    @hookimpl
    def on_request(self, request: Any) -> Any:
        if request.path == "/limited":
            raise RateLimited(headers=[("Retry-After", "1")])
        if request.path == "/anon":
            raise Unauthorized()
        if request.path == "/denied":
            raise Forbidden()
        if request.path == "/cached":
            request.state["cache"] = "HIT"
            return Response(status=200, body=b"cached")
        if request.path == "/fresh":
            request.state["cache"] = "miss"
        return None


CONFIG = yaml(
    """
    listeners: [{name: p, endpoint: "tcp:0"}]
    upstreams: {app: {targets: [{url: "http://app:80"}, {url: "http://app2:80", weight: 2}]}}
    routes:
      - {name: api, path: "/*", host: gw, upstream: app, plugins: {gatekeeper: {}}}
      - {name: only-get, path: "/get-only", methods: [GET], upstream: app}
    """
)


def samples(gw: GatewayHarness) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    text = generate_latest(gw.generation.ops.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: Dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_by_route_method_and_status_class():
    from twisted.internet.task import Clock

    clock = Clock()
    gw = GatewayHarness(load_text(CONFIG), Upstream(clock), clock=clock, plugins={"gatekeeper": Gatekeeper})
    for path in ("/a", "/b", "/boom", "/limited", "/anon", "/denied", "/cached", "/fresh"):
        gw.content(gw.request("GET", f"http://gw{path}"))
    gw.content(gw.request("POST", "http://gw/a", data=b"12345"))
    gw.content(gw.request("PURGE", "http://gw/a"))
    gw.content(gw.request("POST", "http://gw/get-only"))
    gw.content(gw.request("GET", "http://elsewhere/x"))
    found = samples(gw)
    assert value(found, "twistgate_requests_total", route="api", method="GET", status_class="2xx") == 4
    assert value(found, "twistgate_requests_total", route="api", method="GET", status_class="5xx") == 1
    assert value(found, "twistgate_requests_total", route="api", method="GET", status_class="4xx") == 3
    assert value(found, "twistgate_requests_total", route="api", method="POST", status_class="2xx") == 2
    assert value(found, "twistgate_requests_total", route="api", method="OTHER", status_class="2xx") == 1
    assert value(found, "twistgate_requests_total", route="", method="GET", status_class="4xx") == 1  # 404
    assert value(found, "twistgate_rate_limited_total", route="api") == 1
    assert value(found, "twistgate_auth_rejected_total", route="api", reason="unauthorized") == 1
    assert value(found, "twistgate_auth_rejected_total", route="api", reason="forbidden") == 1
    assert value(found, "twistgate_cache_lookups_total", route="api", result="hit") == 1
    assert value(found, "twistgate_cache_lookups_total", route="api", result="miss") == 1
    assert value(found, "twistgate_response_body_bytes_total", route="api") >= 60  # 6 upstream bodies of 10
    assert value(found, "twistgate_request_duration_seconds_count", route="api") == 11
    assert value(found, "twistgate_upstream_duration_seconds_count", upstream="app") == 7
    assert value(found, "twistgate_build_info", version=__import__("twistgate").__version__, python=__import__("platform").python_version(), twisted=__import__("twisted").__version__) == 1
    assert value(found, "twistgate_config_generation") == 1
    assert value(found, "twistgate_upstream_target_healthy", upstream="app", target="http://app2") == 1


def test_labels_never_carry_paths_or_client_addresses():
    gw = GatewayHarness(load_text(CONFIG), Upstream(None), plugins={"gatekeeper": Gatekeeper})
    for i in range(20):
        gw.content(gw.request("GET", f"http://gw/users/{i}?token=secret{i}"))
    text = generate_latest(gw.generation.ops.registry).decode()
    assert "/users/" not in text and "secret" not in text and "127.0.0.1" not in text
    series = [line for line in text.splitlines() if line.startswith("twistgate_requests_total{")]
    assert len(series) == 1


def test_latency_histogram_uses_the_gateway_clock():
    from twisted.internet.task import Clock
    from twisted.web.server import NOT_DONE_YET

    clock = Clock()
    pending = []

    class Slow(Resource):
        isLeaf = True

        def render(self, request):
            pending.append(request)
            return NOT_DONE_YET

    gw = GatewayHarness(load_text(CONFIG), Slow(), clock=clock, plugins={"gatekeeper": Gatekeeper})
    d = gw.send("GET", "http://gw/slow")
    clock.advance(0.3)
    pending[0].write(b"done")
    pending[0].finish()
    gw.flush()
    gw.content(d.result)
    found = samples(gw)
    assert value(found, "twistgate_request_duration_seconds_bucket", route="api", le="0.25") == 0
    assert value(found, "twistgate_request_duration_seconds_bucket", route="api", le="0.5") == 1
    assert value(found, "twistgate_upstream_duration_seconds_sum", upstream="app") == 0.3
    assert value(found, "twistgate_requests_in_flight") == 0


def test_each_gateway_has_its_own_registry():
    a = GatewayHarness(load_text(CONFIG), Upstream(None), plugins={"gatekeeper": Gatekeeper})
    b = GatewayHarness(load_text(CONFIG), Upstream(None), plugins={"gatekeeper": Gatekeeper})
    a.content(a.request("GET", "http://gw/a"))
    assert value(samples(a), "twistgate_requests_total", route="api", method="GET", status_class="2xx") == 1
    assert value(samples(b), "twistgate_requests_total", route="api", method="GET", status_class="2xx") == 0


def test_upstream_health_and_breaker_state_from_the_upstream_snapshot():
    from types import SimpleNamespace

    from twisted.internet.task import Clock

    from twistgate.ops.runtime import Operations

    class Snapshotting:
        def snapshot(self):
            return [
                {"url": "http://a", "weight": 1, "healthy": True, "breaker": "closed", "in_flight": 2},
                {"url": "http://b", "weight": 1, "healthy": False, "breaker": "half_open", "in_flight": 0},
            ]

    ops = Operations(Clock())
    ops.adopt(SimpleNamespace(upstreams={"u": Snapshotting()}, inflight=SimpleNamespace(count=3)))
    text = generate_latest(ops.registry).decode()
    assert 'twistgate_upstream_target_healthy{target="http://a",upstream="u"} 1.0' in text
    assert 'twistgate_upstream_target_healthy{target="http://b",upstream="u"} 0.0' in text
    assert 'twistgate_upstream_target_in_flight{target="http://a",upstream="u"} 2.0' in text
    assert 'twistgate_upstream_breaker_state{state="half_open",target="http://b",upstream="u"} 1.0' in text
    assert 'twistgate_upstream_breaker_state{state="open",target="http://b",upstream="u"} 0.0' in text
    assert "twistgate_requests_in_flight 3.0" in text


def test_a_websocket_counts_its_handshake_not_its_hours_in_latency_figures():
    """A 101 that stayed open an hour: the duration histogram and the stats see the 10 ms to the switch."""
    from twisted.internet.task import Clock

    from twistgate.ops.request_metrics import RequestCounts
    from twistgate.ops.stats import Stats
    from twistgate.record import ExchangeRecord

    record = ExchangeRecord(
        request_id="r", method="GET", path="/chat", route="chat", status=101, error=None, started=1000.0,
        finished=4600.0, upstream="app", target="http://app", attempts=1, upstream_head_seconds=0.01, bytes_in=0,
        bytes_out=0, client_ip="127.0.0.1", consumer=None, client_gone=False, state={}, protocol="HTTP/1.1",
        grpc_status=None,
    )
    counts = RequestCounts(lambda: 4600.0)
    counts.observe(record)
    assert counts.duration["chat"].total == 0.01
    clock = Clock()
    clock.advance(4600.0)
    stats = Stats(clock)
    stats.observe(record)
    assert stats.snapshot()["routes"]["chat"]["latency_ms"]["p99"] == 10.0


def test_a_record_of_an_exchange_carries_its_latency_a_websocket_its_handshake():
    """`ExchangeRecord.of` works the latency out once: the duration, or a 101's time to the switch."""
    from types import SimpleNamespace

    from twistgate.record import ExchangeRecord

    def exchange(status: int) -> Any:
        downstream = SimpleNamespace(
            method=b"GET", path=b"/chat", code=status, received_bytes=0, sent_bytes=0, client=("127.0.0.1", 1),
            version=b"HTTP/1.1", listener="main",
        )
        call = SimpleNamespace(target=None, head_at=1000.01, upstream="app", attempts=1)
        return SimpleNamespace(
            downstream=downstream, proxy_request=SimpleNamespace(started=1000.0, client_ip="127.0.0.1", consumer=None, state={}),
            route=None, call=call, request_id="r", answered=True,
            error=None, client_gone=False, grpc_status=None,
        )

    websocket = ExchangeRecord.of(exchange(101), 4600.0)
    assert websocket.latency == websocket.upstream_head_seconds
    assert round(websocket.latency, 6) == 0.01
    plain = ExchangeRecord.of(exchange(200), 4600.0)
    assert plain.latency == plain.duration == 3600.0


def test_requests_of_unknown_methods_or_protocols_leave_no_remembered_series():
    """`RequestCounts.cells` stays bounded: a client's made-up method is counted as OTHER, not remembered."""
    from twistgate.ops.request_metrics import RequestCounts
    from twistgate.record import ExchangeRecord

    def record(method: str, protocol: str) -> ExchangeRecord:
        return ExchangeRecord(
            request_id="r", method=method, path="/", route="r", status=200, error=None, started=1.0, finished=2.0,
            upstream="app", target="http://app", attempts=1, upstream_head_seconds=0.5, bytes_in=0, bytes_out=3,
            client_ip="127.0.0.1", consumer=None, client_gone=False, state={}, protocol=protocol, grpc_status=None,
        )

    counts = RequestCounts(lambda: 2.0)
    counts.observe_all([record("GET", "HTTP/1.1"), record("GET", "HTTP/1.1"), record("FOO", "HTTP/1.1"),
                        record("BAR", "HTTP/1.1"), record("GET", "HTTP/9")])
    assert list(counts.cells) == [("r", "GET", 200, "app", "HTTP/1.1")]
    assert counts.requests == {("r", "GET", 200): [3, 2.0], ("r", "OTHER", 200): [2, 2.0]}
    assert counts.protocols == {"HTTP/1.1": [4, 2.0], "other": [1, 2.0]}
    assert counts.bytes_out == {"r": [15, 2.0]} and sum(counts.upstream_duration["app"].buckets) == 5
