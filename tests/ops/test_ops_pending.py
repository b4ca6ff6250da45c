"""Finished requests are counted in batches (twistgate.ops.pending), yet every read sees them all."""

from __future__ import annotations

from typing import Optional

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from twistgate.ops.pending import BOUND, PendingRecords
from twistgate.ops.runtime import Operations
from twistgate.record import ExchangeRecord


def record(finished: float, route: Optional[str] = "api", status: int = 200, ms: float = 5.0) -> ExchangeRecord:
    return ExchangeRecord(
        request_id="r", method="GET", path="/x", route=route, status=status, error=None, started=finished - ms / 1000.0,
        finished=finished, upstream="app", target="http://app", attempts=1, upstream_head_seconds=ms / 2000.0,
        bytes_in=0, bytes_out=10, client_ip="127.0.0.1", consumer=None, client_gone=False, state={},
    )


def scraped(ops: Operations, name: str, **labels: str) -> Optional[float]:
    for family in text_string_to_metric_families(generate_latest(ops.registry).decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_a_scrape_counts_every_request_finished_before_it_without_any_fold():
    clock = Clock()
    ops = Operations(clock)
    for n in range(7):
        ops.observe(record(100.0 + n, status=200 if n < 5 else 503))
    assert len(ops.pending.records) == 7  # nothing folded yet: the scrape must do it
    assert scraped(ops, "twistgate_requests_total", route="api", status_class="2xx") == 5.0
    assert scraped(ops, "twistgate_requests_total", route="api", status_class="5xx") == 2.0
    assert scraped(ops, "twistgate_request_duration_seconds_count", route="api") == 7.0
    assert scraped(ops, "twistgate_response_body_bytes_total", route="api") == 70.0
    # A series is created when its first request finished, not when it was folded.
    assert scraped(ops, "twistgate_requests_created", route="api", status_class="2xx") == 100.0
    assert scraped(ops, "twistgate_requests_created", route="api", status_class="5xx") == 105.0
    # Read again, and after more requests: each request is counted once.
    assert scraped(ops, "twistgate_requests_total", route="api", status_class="2xx") == 5.0
    ops.observe(record(200.0))
    assert scraped(ops, "twistgate_requests_total", route="api", status_class="2xx") == 6.0


def test_the_stats_and_the_history_see_pending_requests():
    clock = Clock()
    clock.advance(1000.0)
    ops = Operations(clock)
    for _ in range(3):
        ops.observe(record(clock.seconds()))
    ops.observe(record(clock.seconds(), route=None, status=404))
    assert len(ops.pending.records) == 4
    snapshot = ops.stats.snapshot()
    assert snapshot["total"]["requests"] == 4 and snapshot["routes"]["api"]["requests"] == 3
    assert snapshot["routes"]["(no route)"]["status"] == {"4xx": 1}
    ops.observe(record(clock.seconds(), status=502))
    assert ops.stats.export()["routes"]["api"]["count"] == 4  # what a worker hands its supervisor
    ops.observe(record(clock.seconds()))
    ops.history.collect()  # the history tick reads the series directly
    assert ops.history.open.total.requests == 6 and ops.history.open.total.errors == 1


def test_pending_records_are_bounded_and_each_sink_sees_each_record_once():
    seen_a: list = []
    seen_b: list = []
    pending = PendingRecords((seen_a.extend, seen_b.extend), bound=4)
    for n in range(10):
        pending.add(n)
        assert len(pending.records) < 4
    assert seen_a == seen_b == list(range(8))
    pending.fold()
    pending.fold()  # nothing left: no sink called twice
    assert seen_a == seen_b == list(range(10))


def test_the_gateway_never_holds_more_than_the_bound():
    ops = Operations(Clock())
    for n in range(BOUND * 3 + 1):
        ops.observe(record(float(n)))
        assert len(ops.pending.records) < BOUND
    assert ops.stats.total.count == BOUND * 3 + 1


def test_a_record_is_built_field_by_field_from_its_exchange():
    """`ExchangeRecord.of` sets its fields one by one: each must land where its name says."""
    from types import SimpleNamespace as NS

    downstream = NS(method=b"PATCH", path=b"/p", code=201, received_bytes=3, sent_bytes=4, client=("10.0.0.9", 1),
                    version=b"HTTP/1.0", listener="pub")
    state = {"k": 1}
    exchange = NS(
        downstream=downstream, answered=True, request_id="rid", error=NS(code="bad_gateway"), client_gone=True,
        grpc_status=14, route=NS(name="r", upstream=NS(name="u0"), config=NS(access_log=False)),
        call=NS(target=NS(url="http://t"), head_at=12.5, upstream="u1", attempts=2),
        proxy_request=NS(started=10.0, client_ip="1.2.3.4", consumer="alice", state=state),
    )
    r = ExchangeRecord.of(exchange, 20.0)
    assert (r.request_id, r.method, r.path, r.route, r.status, r.error) == ("rid", "PATCH", "/p", "r", 201, "bad_gateway")
    assert (r.started, r.finished, r.upstream, r.target, r.attempts) == (10.0, 20.0, "u1", "http://t", 2)
    assert (r.upstream_head_seconds, r.bytes_in, r.bytes_out, r.client_ip, r.consumer) == (2.5, 3, 4, "1.2.3.4", "alice")
    assert (r.client_gone, r.state, r.protocol, r.grpc_status, r.logged, r.listener) == (True, state, "HTTP/1.0", 14, False, "pub")


def test_a_record_of_an_exchange_without_route_call_or_request_has_every_field():
    """`ExchangeRecord.of` stores the fields one by one: none may be left unset on any path."""
    from types import SimpleNamespace as NS

    import attrs

    downstream = NS(method=b"BREW", path=b"/caf\xe9", code=404, received_bytes=0, sent_bytes=9, client=("10.0.0.9", 1),
                    version=b"HTTP/1.1", listener="pub")
    exchange = NS(downstream=downstream, answered=False, request_id="rid", error=None, client_gone=True,
                  grpc_status=None, route=None, call=None, proxy_request=None)
    r = ExchangeRecord.of(exchange, 20.0)
    assert attrs.asdict(r, recurse=False) == dict(
        request_id="rid", method="BREW", path="/caf\xe9", route=None, status=0, error=None, started=20.0, finished=20.0,
        upstream=None, target=None, attempts=0, upstream_head_seconds=None, bytes_in=0, bytes_out=9,
        client_ip="10.0.0.9", consumer=None, client_gone=True, state={}, protocol="HTTP/1.1", grpc_status=None,
        logged=True, listener="pub", latency=0.0,
    )
    routed = NS(**{**vars(exchange), "route": NS(name="r", upstream=None, config=NS(access_log=True)),
                   "call": NS(target=None, head_at=None, upstream=None, attempts=1)})
    r = ExchangeRecord.of(routed, 20.0)
    assert (r.route, r.upstream, r.target, r.attempts, r.upstream_head_seconds) == ("r", None, None, 1, None)
