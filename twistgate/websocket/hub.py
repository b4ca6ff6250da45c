"""
`WebSocketHub`: every open WebSocket of one gateway, whatever configuration
generation it started on, and their metrics.

It outlives generations (one per `twistgate.ops.runtime.Operations`), so the
caps count every open connection, a reload does not reset a counter, and
the old generation's connections can be drained after a reload
(``websocket.drain_timeout``) or a stop (``limits.drain_timeout``).

Metrics (`WebSocketCollector`, read when scraped; bytes include what the
open connections relayed so far):

* ``twistgate_websocket_connections_open{route}``
* ``twistgate_websocket_connections_total{route}``
* ``twistgate_websocket_bytes_total{route, direction}``: ``client_to_upstream``, ``upstream_to_client``
* ``twistgate_websocket_closes_total{route, code, closed_by}``: the first close
  frame's code (``1006``: none), and who sent it (``client``, ``upstream``, ``gateway``)
* ``twistgate_websocket_refused_total{route, reason}``: ``max_connections``
* ``twistgate_websocket_duration_seconds{route}`` (histogram)
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from twistgate.websocket.frames import close_label
from twistgate.websocket.tunnel import Tunnel

__all__ = ["WebSocketHub"]

_log = Logger()

DURATION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
UP, DOWN = "client_to_upstream", "upstream_to_client"


class WebSocketHub:
    """The open WebSockets and their counters (see the module docstring)."""

    def __init__(self, registry: Any, clock: Any) -> None:
        self.clock = clock
        self.open: Dict[Tunnel, Tuple[str, Any]] = {}  # tunnel -> (route, generation)
        self.reserved: Dict[str, int] = {}  # route -> slots taken (handshakes under way + open)
        self.total_reserved = 0
        self._bytes: Dict[Tuple[str, str], int] = {}  # of closed connections
        self._opened: Dict[str, int] = {}
        self._closes: Dict[Tuple[str, str, str], int] = {}
        self._drains: Dict[Any, Any] = {}  # generation -> its drain timer
        self._gone: List[Deferred[None]] = []  # waiting for every connection to end
        self.refused = Counter(
            "twistgate_websocket_refused", "WebSocket upgrades refused by the gateway, by route and reason.",
            ("route", "reason"), registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "twistgate_websocket_duration_seconds", "How long WebSocket connections stayed open.",
            ("route",), buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        registry.register(WebSocketCollector(self))

    # -- the caps ----------------------------------------------------------------

    def reserve(self, route: str, route_limit: Optional[int], gateway_limit: Optional[int]) -> bool:
        """Take a slot for an upgrade on `route`, under both caps; False (counted) when either is reached."""
        if (gateway_limit is not None and self.total_reserved >= gateway_limit) or (
            route_limit is not None and self.reserved.get(route, 0) >= route_limit
        ):
            self.refused.labels(route, "max_connections").inc()
            return False
        self.reserved[route] = self.reserved.get(route, 0) + 1
        self.total_reserved += 1
        return True

    def release(self, route: str) -> None:
        """Give back a slot (the upgrade failed, or its connection ended)."""
        self.reserved[route] -= 1
        self.total_reserved -= 1

    # -- open connections -----------------------------------------------------------

    def opened(self, tunnel: Tunnel, route: str, generation: Any) -> None:
        self.open[tunnel] = (route, generation)
        self._opened[route] = self._opened.get(route, 0) + 1

    def closed(self, tunnel: Tunnel) -> None:
        route, generation = self.open.pop(tunnel)
        self.release(route)
        for direction, count in ((UP, tunnel.bytes_up), (DOWN, tunnel.bytes_down)):
            if count:
                self._bytes[(route, direction)] = self._bytes.get((route, direction), 0) + count
        key = (route, close_label(tunnel.close_code), tunnel.closed_by or "client")
        self._closes[key] = self._closes.get(key, 0) + 1
        self.duration.labels(route).observe(max(self.clock.seconds() - tunnel.started, 0.0))
        if not self.open and self._gone:
            waiters, self._gone = self._gone, []
            for d in waiters:
                if not d.called:  # (a stop may have stopped waiting)
                    d.callback(None)
        self.forget_if_drained(generation)

    def of(self, generation: Any) -> List[Tunnel]:
        return [tunnel for tunnel, (_, g) in self.open.items() if g is generation]

    # -- draining -------------------------------------------------------------------

    def drain(self, generation: Any, timeout: float) -> None:
        """
        After a reload: `generation`'s WebSockets stay up to `timeout` more,
        then are closed (1001); handshakes still under way on it count too.
        Its streams (responses without a length, which no route timeout
        bounds) are cut then too.
        """
        if generation in self._drains or self._nothing_left_of(generation):
            return
        self._drains[generation] = self.clock.callLater(timeout, self._drained, generation, timeout)

    def forget_if_drained(self, generation: Any) -> None:
        """
        Cancel `generation`'s drain timer once nothing of it is left (it
        retired, or its last WebSocket closed after that): the timer holds the whole retired generation (its
        routes, pools, caches) for up to ``drain_timeout``, ten minutes by
        default, so a gateway reloaded every minute would keep ten of them.
        """
        if not self._nothing_left_of(generation):
            return
        timer = self._drains.pop(generation, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _nothing_left_of(self, generation: Any) -> bool:
        """
        No WebSocket of `generation` open, no stream of it relaying, and no
        request of it in flight: a handshake under way may still open one.
        """
        inflight = getattr(generation, "inflight", None)
        return (
            not any(g is generation for _, g in self.open.values())
            and not getattr(generation, "streams", None)
            and not (inflight is not None and inflight.count)
        )

    def _drained(self, generation: Any, timeout: float) -> None:
        self._drains.pop(generation, None)
        tunnels = self.of(generation)
        streams = [exchange for exchange in getattr(generation, "streams", ()) if exchange.relay is not None]
        if tunnels or streams:
            _log.info(
                "closing {count} WebSocket connection(s) and {streams} stream(s) of a replaced configuration: "
                "websocket.drain_timeout ({timeout}s) passed",
                count=len(tunnels), streams=len(streams), timeout=timeout,
            )  # fmt: skip
        for tunnel in tunnels:
            tunnel.shut(1001, b"going away")
        for exchange in streams:
            exchange.relay.abort()  # cut, like an upstream that stopped: an event-stream client reconnects

    def close_all(self, reason: bytes = b"going away") -> "Deferred[Any]":
        """Close every open WebSocket (1001); fires when they are all gone."""
        if not self.open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._gone.append(d)
        for tunnel in list(self.open):
            tunnel.shut(1001, reason)
        return d

    # -- what the collector reads ---------------------------------------------------

    def snapshot(self) -> Tuple[Dict[str, int], Dict[str, int], Dict[Tuple[str, str], int], Dict[Tuple[str, str, str], int]]:
        """(open by route, opened by route, bytes by route and direction, closes by route, code and side)."""
        open_by_route: Dict[str, int] = {}
        byte_counts = dict(self._bytes)
        for tunnel, (route, _) in self.open.items():
            open_by_route[route] = open_by_route.get(route, 0) + 1
            for direction, count in ((UP, tunnel.bytes_up), (DOWN, tunnel.bytes_down)):
                byte_counts[(route, direction)] = byte_counts.get((route, direction), 0) + count
        return open_by_route, dict(self._opened), byte_counts, dict(self._closes)


class WebSocketCollector:
    """The hub's counts as Prometheus families, read at scrape time."""

    def __init__(self, hub: WebSocketHub) -> None:
        self.hub = hub

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        open_now, opened, byte_counts, closes = self.hub.snapshot()
        gauge = GaugeMetricFamily("twistgate_websocket_connections_open", "WebSocket connections open now, by route.", labels=["route"])
        for route in sorted(set(open_now) | set(opened)):
            gauge.add_metric([route], open_now.get(route, 0))
        yield gauge
        total = CounterMetricFamily("twistgate_websocket_connections", "WebSocket connections upgraded, by route.", labels=["route"])
        for route, count in sorted(opened.items()):
            total.add_metric([route], count)
        yield total
        relayed = CounterMetricFamily(
            "twistgate_websocket_bytes", "WebSocket bytes relayed (frames included), by route and direction.",
            labels=["route", "direction"],
        )  # fmt: skip
        for (route, direction), count in sorted(byte_counts.items()):
            relayed.add_metric([route, direction], count)
        yield relayed
        ended = CounterMetricFamily(
            "twistgate_websocket_closes",
            "WebSocket connections ended, by route, the first close frame's code (1006: none) and who sent it.",
            labels=["route", "code", "closed_by"],
        )  # fmt: skip
        for (route, code, side), count in sorted(closes.items()):
            ended.add_metric([route, code, side], count)
        yield ended
