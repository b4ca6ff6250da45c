"""
`Operations`: the part of the operations state that outlives a generation.

Metrics counters, rolling stats and their 15-minute history, the generation
number, the reload history, the audit trail, the operator's drains and when
each API key was last used belong to the gateway, not to one configuration:
a reload must not reset a Prometheus counter.  One `Operations` is made per gateway (in the
first generation's `twistgate.generation.Shared`) and handed to every later
generation.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from twisted.logger import Logger

from twistgate.ops.audit import AuditTrail
from twistgate.ops.fold import RecordFold
from twistgate.ops.history import History
from twistgate.ops.metrics import GatewayMetrics, LiveCollector, new_registry
from twistgate.ops.pending import PendingRecords
from twistgate.ops.stats import Stats
from twistgate.websocket.hub import WebSocketHub

_log = Logger()


def upstream_targets(upstream: Any) -> List[Dict[str, Any]]:
    """The targets of an upstream group as plain JSON values (admin API, metrics, dashboard)."""
    return upstream.snapshot()


class Operations:
    """Counters, stats and the live view of the gateway's generations."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.started = clock.seconds()
        self.registry = new_registry()
        self.metrics = GatewayMetrics(self.registry, clock.seconds)
        self.stats = Stats(clock)
        #: Finished requests not yet counted: folded into the metrics and the stats before either is read.
        self.pending = PendingRecords((RecordFold(self.metrics.counts, self.stats),))
        self.metrics.counts.before_read = self.stats.before_read = self.pending.fold
        self.history = History(clock, self.stats)  # sampled on a timer the service starts
        self.audit = AuditTrail(clock)
        #: Upstream name -> URLs of its targets the operator drained (`twistgate.ops.drain`).
        self.drains: Dict[str, Set[str]] = {}
        #: API key id -> when it last authenticated a request (this process).
        self.key_usage: Dict[str, float] = {}
        self.current: Any = None  # the serving Generation
        self.generations: List[Any] = []  # serving + draining
        self.number = 0
        self.connections: Dict[str, int] = {}
        self.open_connections = 0  # every listener together (limits.max_connections)
        self._refusal_logged = -1e9
        self.last_reload: Optional[Dict[str, Any]] = None
        #: The plugins' metrics by full name (twistgate.plugins.metrics): a reload asks for them again.
        self.plugin_metrics: Dict[str, Any] = {}
        self.registry.register(LiveCollector(self))
        #: Every open WebSocket, whatever generation it started on (twistgate.websocket).
        self.websockets = WebSocketHub(self.registry, clock)

    def observe(self, record: Any) -> None:
        """Count a finished request (when the metrics or the stats are next read: `PendingRecords`)."""
        self.pending.add(record)

    def adopt(self, generation: Any) -> int:
        """`generation` serves from now on; returns its number."""
        if generation is self.current:
            return self.number
        self.number += 1
        generation.number = self.number
        self.current = generation
        if generation not in self.generations:
            self.generations.append(generation)
        self.metrics.last_reload_time.set(self.clock.seconds())
        return self.number

    def retired(self, generation: Any) -> None:
        if generation in self.generations:
            self.generations.remove(generation)
        self.websockets.forget_if_drained(generation)  # its streams are done: nothing of it left but WebSockets

    def in_flight(self) -> int:
        return sum(g.inflight.count for g in self.generations)

    def targets(self) -> Iterator[Tuple[str, Dict[str, Any]]]:
        current = self.current
        if current is None:
            return
        for name, upstream in sorted(current.upstreams.items()):
            for target in upstream_targets(upstream):
                yield name, target

    def reload_done(self, ok: bool, summary: Dict[str, Any]) -> None:
        self.metrics.reloads.labels("success" if ok else "failure").inc()
        self.metrics.last_reload_ok.set(1 if ok else 0)
        self.last_reload = {"ok": ok, "at": self.clock.seconds(), **summary}

    def connection_changed(self, listener: str, delta: int) -> None:
        """A connection opened (+1) or closed (-1) on `listener`."""
        self.connections[listener] = self.connections.get(listener, 0) + delta
        self.open_connections += delta

    def admit_connection(self, listener: str) -> bool:
        """
        Whether a new connection on `listener` may be served under
        ``limits.max_connections`` (of the generation serving now, so a reload
        changes it); a refusal is counted, and logged at most every 10 s.
        """
        current = self.current
        limit = current.config.limits.max_connections if current is not None else None
        if limit is None or self.open_connections < limit:
            return True
        self.metrics.connections_refused.labels(listener).inc()
        now = self.clock.seconds()
        if now - self._refusal_logged >= 10:
            self._refusal_logged = now
            _log.warn(
                "limits.max_connections ({limit}) reached: closing new connections (listener {listener})",
                limit=limit,
                listener=listener,
            )
        return False
