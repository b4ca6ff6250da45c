"""
OTLP/HTTP trace export with the JSON encoding (ids as hex, times as
nanosecond strings), batched behind a bounded queue.

Nothing here can block the reactor or grow without bound: spans are queued
in memory (dropped and counted when the queue is full), sent in batches by a
timer or when a batch fills, one request at a time through the gateway's side
HTTP client, each bounded by a timeout.  A collector that is down costs
dropped spans, never requests.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twistgate import __version__

_log = Logger()


def _value(value: Any) -> Dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _nanos(seconds: float) -> str:
    return str(int(round(seconds * 1e9)))


def span_json(span: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": _nanos(span.start),
        "endTimeUnixNano": _nanos(max(span.end, span.start)),
        "attributes": [{"key": k, "value": _value(v)} for k, v in span.attributes],
        "status": {"code": 2, "message": span.error} if span.error else {"code": 0},
    }
    if span.parent_id:
        out["parentSpanId"] = span.parent_id
    if span.tracestate:
        out["traceState"] = span.tracestate.decode("ascii")
    return out


def export_body(spans: List[Any], service_name: str) -> bytes:
    """An ExportTraceServiceRequest in OTLP's JSON encoding."""
    request = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": service_name}},
                        {"key": "service.version", "value": {"stringValue": __version__}},
                    ]
                },
                "scopeSpans": [
                    {"scope": {"name": "twistgate", "version": __version__}, "spans": [span_json(s) for s in spans]}
                ],
            }
        ]
    }
    return json.dumps(request, separators=(",", ":")).encode("utf-8")


class OTLPExporter:
    """Batches spans and POSTs them to an OTLP/HTTP collector."""

    def __init__(
        self,
        settings: Any,
        clock: Any,
        http_client: Any,
        *,
        on_drop: Callable[[int], None] = lambda n: None,
        on_export: Callable[[int, bool], None] = lambda n, ok: None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.http_client = http_client
        self.queue: Deque[Any] = deque()
        self.on_drop = on_drop
        self.on_export = on_export
        self.sending: Optional[Deferred] = None
        self.headers = {b"Content-Type": [b"application/json"]}
        for name, value in settings.headers:
            self.headers[name.encode("latin-1")] = [value.encode("latin-1")]
        self._loop: Optional[LoopingCall] = None

    def add(self, span: Any) -> None:
        if len(self.queue) >= self.settings.queue_size:
            self.on_drop(1)
            return
        self.queue.append(span)
        if len(self.queue) >= self.settings.batch_size and self.sending is None:
            self.flush()

    def flush(self) -> "Deferred[None]":
        """Send one batch now (unless one is on its way); fires when it is settled."""
        if self.sending is not None or not self.queue or self.http_client is None:
            return succeed(None)
        count = min(len(self.queue), self.settings.batch_size)
        batch = [self.queue.popleft() for _ in range(count)]
        body = export_body(batch, self.settings.service_name)
        d = self.http_client.post(
            self.settings.otlp_endpoint,
            data=body,
            headers=self.headers,
            timeout=self.settings.export_timeout,
            reactor=self.clock,
            allow_redirects=False,
        )
        self.sending = d  # before the callbacks: they may run at once
        d.addCallback(self._sent, count)
        d.addErrback(self._failed, count)
        return d

    def _sent(self, response: Any, count: int) -> Any:
        ok = 200 <= response.code < 300
        if not ok:
            _log.warn("OTLP collector answered {code}; {count} spans dropped", code=response.code, count=count)
        self.on_export(count, ok)
        return response.content().addBoth(self._done)

    def _failed(self, failure: Any, count: int) -> None:
        _log.warn("OTLP export failed ({reason}); {count} spans dropped", reason=failure.getErrorMessage(), count=count)
        self.on_export(count, False)
        self._done(None)

    def _done(self, _: Any) -> None:
        self.sending = None
        if len(self.queue) >= self.settings.batch_size:
            self.flush()

    def start(self) -> None:
        self._loop = LoopingCall(self.flush)
        self._loop.clock = self.clock
        self._loop.start(self.settings.export_interval, now=False)

    def stop(self) -> "Deferred[None]":
        """Stop the timer and send what is queued (one last batch)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        pending = self.sending if self.sending is not None else succeed(None)
        return pending.addBoth(lambda _: self.flush())
