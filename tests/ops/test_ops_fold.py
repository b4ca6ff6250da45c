"""The metrics and the stats folded together (twistgate.ops.fold) count exactly what each counts alone."""

from __future__ import annotations

import itertools
from typing import Any, List

from twisted.internet.task import Clock

from tests.ops.helpers import access_record
from twistgate.ops.fold import RecordFold
from twistgate.ops.runtime import Operations


def varied(count: int) -> List[Any]:
    """Records of many kinds: routes, methods, statuses, protocols, errors, cache results, odd latencies."""
    kinds = itertools.cycle([
        {},
        {"route": "b", "status": 404, "method": "POST", "bytes_in": 7},
        {"route": None, "status": 0, "upstream": None, "upstream_head_seconds": None, "client_gone": True},
        {"status": 503, "attempts": 3, "error": "upstream_unavailable"},
        {"method": "FOO", "protocol": "HTTP/9", "error": "rate_limited", "status": 429},
        {"protocol": "HTTP/2", "error": "unauthorized", "status": 401, "grpc_status": 14},
        {"state": {"cache": "HIT", "trace": object()}, "bytes_out": 0},
        {"state": {"cache": "miss", "split": "blue"}, "route": "b"},
        {"status": 101, "upstream_head_seconds": -0.5, "started": 1700000001.0},
        {"route": "b", "status": 200, "method": "HEAD"},
    ])
    return [access_record(finished=1700000000.3 + n / 1000.0, **next(kinds)) for n in range(count)]


def test_one_loop_counts_what_two_count_alone():
    records = varied(300)
    together = Operations(Clock())
    folded = 0
    for size in itertools.cycle([1, 7, 64, 3, 50]):  # batches of every size, each kind settled per batch
        together.pending.sinks[0](records[folded : folded + size])
        folded += size
        if folded >= len(records):
            break
    alone = Operations(Clock())
    for record in records:
        alone.metrics.counts.observe(record)
        alone.stats.observe(record)
    assert list(together.metrics.counts.collect()) == list(alone.metrics.counts.collect())  # every per-request family
    assert together.stats.export() == alone.stats.export()
    assert together.stats.snapshot() == alone.stats.snapshot()
    assert together.stats.total.count == 300 and together.stats.total.errors == 60  # no answer (0) and 503, thirty times each
    assert together.stats.routes[""].count == 30 and together.stats.total.cache_hits == 30


def test_kinds_of_made_up_methods_or_protocols_are_not_remembered():
    ops = Operations(Clock())
    fold = ops.pending.sinks[0]
    assert isinstance(fold, RecordFold)
    fold([access_record(), access_record(method="FOO"), access_record(protocol="HTTP/9"), access_record()])
    assert list(fold.kinds) == [("r", "GET", 200, "app", "HTTP/1.1")]
    assert ops.stats.routes["r"].count == 4 and ops.metrics.counts.requests[("r", "GET", 200)][0] == 3


def test_a_record_that_breaks_the_fold_leaves_the_others_counted():
    """Every kind seen before the broken record is settled: its requests count, now and at the next fold."""
    ops = Operations(Clock())
    fold = ops.pending.sinks[0]
    try:
        fold([access_record(), access_record(), object()])
    except AttributeError:
        pass
    fold([access_record()])
    assert ops.stats.total.count == ops.stats.routes["r"].count == 3
    assert ops.metrics.counts.requests[("r", "GET", 200)][0] == 3
