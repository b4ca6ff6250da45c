"""The 15-minute history: bucket maths, the bounded ring, figures read from the counters on a Clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional

import pytest
from twisted.internet.task import Clock

from twistgate.ops.history import (
    Bucket, Figures, History, HistoryRing, HistorySettings, bin_seconds, bucket_end, latency_bin, render,
)
from twistgate.ops.stats import Stats


def record(clock: Clock, route: Optional[str], status: int = 200, ms: float = 10.0, cache: Any = None) -> Any:
    now = clock.seconds()
    return SimpleNamespace(
        route=route, status=status, started=now - ms / 1000.0, finished=now, duration=ms / 1000.0, latency=ms / 1000.0,
        state={"cache": cache} if cache else {},
    )


def test_buckets_end_on_multiples_of_their_length():
    """A bucket holds (end - 10, end]: every worker's buckets line up on the clock."""
    assert bucket_end(0.0, 10) == 10 and bucket_end(9.99, 10) == 10
    assert bucket_end(10.0, 10) == 20 and bucket_end(1234.5, 10) == 1240


@pytest.mark.parametrize("seconds", [0.00005, 0.0003, 0.0042, 0.05, 0.25, 1.7, 31.0])
def test_latency_bins_are_within_four_percent(seconds):
    """A bin stands for its geometric middle: any duration in it is within 4 % (the 0.1 ms floor aside)."""
    value = bin_seconds(latency_bin(seconds))
    assert abs(value - max(seconds, 1e-4)) <= 0.04 * max(seconds, 1e-4)


def test_the_ring_is_bounded_and_adds_buckets_of_the_same_end():
    """At most span/bucket buckets, the oldest dropped; a second bucket of one end (another worker's) adds up."""
    ring = HistoryRing(HistorySettings(bucket=10, span=50))
    for end in range(10, 110, 10):
        bucket = Bucket(float(end))
        bucket.total.requests = end
        ring.add(bucket)
    assert sorted(ring.buckets) == [60.0, 70.0, 80.0, 90.0, 100.0]
    extra = Bucket(100.0)
    extra.total.requests = 5
    extra.route("api").requests = 5
    ring.add(extra)
    assert ring.buckets[100.0].total.requests == 105 and ring.buckets[100.0].routes["api"].requests == 5
    assert [b.end for b in ring.since(80.0)] == [90.0, 100.0]


def test_figures_percentiles_rates_and_their_export():
    """Nearest-rank percentiles from the histogram; rates per second; error and cache hit rates as fractions."""
    figures = Figures()
    for ms in [1] * 50 + [10] * 49 + [500]:
        index = latency_bin(ms / 1000.0)
        figures.latency[index] = figures.latency.get(index, 0) + 1
    figures.requests, figures.errors, figures.cache_hits, figures.cache_misses = 100, 5, 3, 1
    point = figures.point(40.0, 10.0)
    assert point["rate_per_second"] == 10.0 and point["error_rate"] == 0.05 and point["cache_hit_rate"] == 0.75
    assert point["p50_ms"] == pytest.approx(1.0, rel=0.04) and point["p99_ms"] == pytest.approx(10.0, rel=0.04)
    again = Figures.imported(figures.export())
    assert again.point(40.0, 10.0) == point
    assert Figures().point(40.0, 10.0)["p50_ms"] is None and Figures().point(40.0, 10.0)["error_rate"] is None


def history_at(start: float = 1000.0) -> Any:
    clock = Clock()
    clock.advance(start)
    stats = Stats(clock)
    return clock, stats, History(clock, stats, HistorySettings(bucket=10, span=60, sample_every=2))


def test_history_reads_the_counters_into_10_second_buckets():
    """Sampled on a LoopingCall: each bucket gets what the counters moved in it, per route and in total."""
    clock, stats, history = history_at(1000.0)
    history.start()
    for _ in range(20):  # bucket (1000, 1010]: 20 requests on "api", 2 of them 5xx
        clock.advance(0.25)
        stats.observe(record(clock, "api", 200, ms=4.0))
    stats.observe(record(clock, "api", 503, ms=200.0))
    stats.observe(record(clock, "api", 500, ms=200.0))
    clock.advance(10.0 - 5.0)  # to 1010: the loop closes the bucket
    for _ in range(5):  # bucket (1010, 1020]: unmatched requests, cache hits on "web"
        clock.advance(1.0)
        stats.observe(record(clock, None, 404, ms=1.0))
        stats.observe(record(clock, "web", 200, ms=2.0, cache="HIT"))
    clock.advance(5.0)
    answer = history.answer(["api", "web", "idle"])
    history.stop()
    assert clock.getDelayedCalls() == []
    assert [p["at"] for p in answer["total"]] == [1010.0, 1020.0, 1030.0]
    first, second, current = answer["total"]
    assert first["requests"] == 22 and first["errors"] == 2 and first["rate_per_second"] == 2.2
    assert first["p50_ms"] == pytest.approx(4.0, rel=0.04) and first["p99_ms"] == pytest.approx(200.0, rel=0.04)
    assert second["requests"] == 10 and second["cache_hit_rate"] == 1.0
    assert current["requests"] == 0 and current["partial"] is True
    routes = answer["routes"]
    assert list(routes) == ["api", "web", "idle", "(no route)"]  # configured first, idle ones too
    assert [p["requests"] for p in routes["api"]] == [22, 0, 0]
    assert [p["requests"] for p in routes["(no route)"]] == [0, 5, 0]
    assert [p["requests"] for p in routes["idle"]] == [0, 0, 0] and routes["idle"][0]["p99_ms"] is None
    assert list(history.answer(["api"], selected=["web"])["routes"]) == ["web"]


def test_the_open_bucket_is_current_and_its_rate_counts_the_time_elapsed():
    """An admin request reads the counters first: the last point moves before its bucket closes."""
    clock, stats, history = history_at(1000.0)
    clock.advance(4.0)
    for _ in range(8):
        stats.observe(record(clock, "api"))
    (point,) = history.answer(["api"])["total"]
    assert point["partial"] and point["requests"] == 8 and point["rate_per_second"] == 2.0  # 8 in 4 s


def test_the_history_keeps_15_minutes_and_no_more():
    """The ring is bounded: after an hour, 90 buckets of 10 s (the open one included)."""
    clock = Clock()
    stats = Stats(clock)
    history = History(clock, stats)
    history.start()
    for _ in range(3600):
        clock.advance(1.0)
        stats.observe(record(clock, "api"))
    answer = history.answer(["api"])
    history.stop()
    assert len(history.ring.buckets) == 90 and len(answer["total"]) == 90
    assert answer["total"][-1]["at"] - answer["total"][0]["at"] == 890.0
    assert all(p["requests"] == 10 for p in answer["total"][:-1])


def test_samples_beyond_the_newest_are_not_counted_twice():
    """Every request counted appends one sample: only the newest of a series are new since the last read."""
    clock, stats, history = history_at(0.0)
    for _ in range(3):
        clock.advance(1.0)
        stats.observe(record(clock, "api", ms=1.0))
    history.collect()
    clock.advance(1.0)
    stats.observe(record(clock, "api", ms=100.0))
    history.collect()
    (point,) = history.answer(["api"])["routes"]["api"]
    assert point["requests"] == 4
    assert sum(history.open.routes["api"].latency.values()) == 4


def test_render_fills_gaps_with_zeros():
    """A bucket nobody closed (the reactor was busy) is a zero point, not a hole in the series."""
    ring = HistoryRing(HistorySettings(bucket=10, span=60))
    for end in (10.0, 40.0):
        bucket = Bucket(end)
        bucket.total.requests = 10
        ring.add(bucket)
    answer = render(ring, Bucket(50.0), 45.0, [])
    assert [(p["at"], p["requests"]) for p in answer["total"]] == [(10.0, 10), (20.0, 0), (30.0, 0), (40.0, 10), (50.0, 0)]
