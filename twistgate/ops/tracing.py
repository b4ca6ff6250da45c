"""
Distributed tracing: W3C Trace Context propagated upstream, and (optionally)
one span per request and one per upstream attempt exported over OTLP.

* `TraceStage` runs first on every route (a gateway-wide stage): it reads
  the client's ``traceparent``/``tracestate`` (or starts a trace), keeps the
  request's server span in ``request.state["trace"]`` and sends the trace on.
* `Tracer.traced_attempt` sends one upstream attempt (retries included)
  with a fresh child span id, so the upstream's parent is the attempt, not
  the gateway's request span; upstream groups call it through their
  `twistgate.upstream.events.UpstreamEvents` while spans are exported.
* `Tracer` is the per-generation service tying both to the exporter; the
  request span is made from the `ExchangeRecord` when the request is over.
* `NewTrace`: a trace begun here, when every trace is sampled (CPython):
  its ``traceparent`` value comes ready from a batch
  (`twistgate.ops.tracecontext.new_traceparents`), its ids are cut from it
  only when read.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Optional, Tuple

import attrs
from twisted.python.failure import Failure
from twistgate.headers import Headers

from twistgate.ops.tracecontext import (
    TraceParent, new_trace_ids, new_traceparents, parse_traceparent, parse_tracestate, random_hex, ratio_sampled,
)
from twistgate.plugins.hookspecs import hookimpl

TRACEPARENT = b"Traceparent"  # Twisted's canonical form of the names
TRACESTATE = b"Tracestate"
SERVER, CLIENT = 2, 3  # OTLP SpanKind
_FLAGS = ("00", "01")  # a version-00 traceparent's flags, as begun here (only the sampled bit)
_new = object.__new__
FRESH_BATCH = 64  # new traces' traceparent values made at a time (`Tracer.begin`)


@attrs.define(slots=True)
class TraceContext:
    """The gateway's span of one request, as `TraceStage` set it up."""

    trace_id: str
    span_id: str
    parent_id: Optional[str]  # the client's span, when it sent one
    flags: int
    tracestate: Optional[bytes] = None

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)


class NewTrace:
    """
    A sampled trace begun here (`Tracer.begin`'s usual case), read like a
    `TraceContext`: the ids are cut from its ``traceparent`` value when
    someone reads them (the access log, the exporter), not per request.
    """

    __slots__ = ("traceparent",)
    parent_id = None
    flags = 1
    sampled = True
    tracestate = None

    def __init__(self, traceparent: bytes) -> None:
        self.traceparent = traceparent  # b"00-<trace id>-<span id>-01"

    @property
    def trace_id(self) -> str:
        return self.traceparent[3:35].decode("ascii")

    @property
    def span_id(self) -> str:
        return self.traceparent[36:52].decode("ascii")

    def __eq__(self, other: Any) -> bool:
        return other.__class__ is NewTrace and other.traceparent == self.traceparent

    __hash__ = None  # type: ignore[assignment]  # (as a TraceContext's: equal by value, not hashable)

    def __repr__(self) -> str:
        return f"NewTrace(trace_id={self.trace_id!r}, span_id={self.span_id!r})"


@attrs.define(slots=True)
class Span:
    """A finished span, ready for the exporter."""

    trace_id: str
    span_id: str
    parent_id: Optional[str]
    name: str
    kind: int
    start: float
    end: float
    attributes: List[Tuple[str, Any]]
    error: Optional[str] = None
    tracestate: Optional[bytes] = None


class TraceStage:
    """Per route: continue or start the trace and send it upstream."""

    def __init__(self, tracer: "Tracer") -> None:
        self.tracer = tracer

    @hookimpl(tryfirst=True)
    def on_request(self, request: Any) -> None:
        request.state["trace"] = self.tracer.begin(request.headers)


class Tracer:
    """Begins traces and reports spans for one generation."""

    def __init__(self, settings: Any, clock: Any, exporter: Any = None, *, random_id: Callable[[int], str] = random_hex) -> None:
        self.settings = settings
        self.clock = clock
        self.exporter = exporter
        self.random_id = random_id  # an attempt's span id (a new trace's two ids come from `new_trace_ids`)
        #: Every new trace is sampled (the default ratio, 1.0): no decision to compute per request.
        self.all_sampled = settings.sample_ratio >= 1.0
        #: New traces come from `fresh` (all sampled, CPython: on PyPy the JIT makes the per-request
        #: formatting cheap, and the batch's bytes operations cost more than they save).
        self.batched = self.all_sampled and sys.implementation.name != "pypy"
        #: The next new traces' ``traceparent`` values, made in batches (`new_traceparents`).
        self.fresh: List[bytes] = []

    def begin(self, headers: Headers) -> Any:
        """Read the client's context (or start one) and set the outgoing headers."""
        raw = headers.raw
        sent = raw.get(TRACEPARENT)
        parent = parse_traceparent(sent) if sent is not None else None
        if parent is None and self.batched:
            context = self._fresh(raw)
            raw[TRACEPARENT] = [context.traceparent]
            return context
        if parent is None:
            trace_id, span_id = new_trace_ids()
            flags = 1 if self.all_sampled or ratio_sampled(trace_id, self.settings.sample_ratio) else 0
            context = TraceContext(trace_id, span_id, None, flags)
            if TRACESTATE in raw:
                del raw[TRACESTATE]
        else:
            # Only the sampled bit is known to version 00; others are zeroed.
            context = TraceContext(
                parent.trace_id, self.random_id(8), parent.parent_id, parent.flags & 1,
                parse_tracestate(raw.get(TRACESTATE)),
            )
            if context.tracestate is not None:
                raw[TRACESTATE] = [context.tracestate]
            else:
                raw.pop(TRACESTATE, None)
        # TraceParent(...).header(), without the value object (and without a format spec: the
        # flags are 0 or 1 here, and ``{flags:02x}`` cost more than the rest of the line).
        raw[TRACEPARENT] = [f"00-{context.trace_id}-{context.span_id}-{_FLAGS[context.flags]}".encode("ascii")]
        return context

    def begin_prepared(self, request: Any, forwarding: bytes) -> None:
        """
        `begin` for a bare route's block of ready lines (`Exchange.start`):
        the ``traceparent`` goes upstream as the block's last line after
        ``forwarding`` (`ProxyRequest.prepared_fields`), never set into the
        headers only to be taken out again.
        """
        raw = request.headers.raw
        if self.batched and TRACEPARENT not in raw:
            context = request.state["trace"] = self._fresh(raw)
            value = context.traceparent
        else:
            request.state["trace"] = self.begin(request.headers)
            (value,) = raw.pop(TRACEPARENT)
        request.prepared_fields = b"%sTraceparent: %s\r\n" % (forwarding, value)

    def _fresh(self, raw: Any) -> "NewTrace":
        """The usual new trace: a ready value from the batch, its ids read from it only if someone asks (`NewTrace`)."""
        fresh = self.fresh
        if not fresh:
            fresh = self.fresh = new_traceparents(FRESH_BATCH)
        if TRACESTATE in raw:
            del raw[TRACESTATE]
        context = _new(NewTrace)  # (NewTrace(value) without the call to __init__)
        context.traceparent = fresh.pop()
        return context

    # -- spans ---------------------------------------------------------------

    def observe(self, record: Any) -> None:
        """The request span, from the exchange's record."""
        context = record.state.get("trace") if record.state else None
        if context is None or not context.sampled or self.exporter is None:
            return
        attributes: List[Tuple[str, Any]] = [
            ("http.request.method", record.method),
            ("url.path", record.path),
            ("http.response.status_code", record.status),
            ("client.address", record.client_ip),
            ("twistgate.request_id", record.request_id),
        ]
        if record.route is not None:
            attributes.append(("http.route", record.route))
        if record.upstream is not None:
            attributes.append(("twistgate.upstream", record.upstream))
            attributes.append(("twistgate.attempts", record.attempts))
        if record.consumer:
            attributes.append(("twistgate.consumer", record.consumer))
        error = record.error if record.status >= 500 or record.status == 0 else None
        if record.client_gone:
            error = error or "client_gone"
        self.exporter.add(
            Span(
                trace_id=context.trace_id,
                span_id=context.span_id,
                parent_id=context.parent_id,
                name=f"{record.method} {record.route}" if record.route else record.method,
                kind=SERVER,
                start=record.started,
                end=record.finished,
                attributes=attributes,
                error=error,
                tracestate=context.tracestate,
            )
        )

    def attempt(self, parent: TraceParent, span_id: str, upstream: str, target: Any, method: bytes, start: float) -> Callable[[Any], Any]:
        """The callback that reports one upstream attempt when its head (or failure) arrives."""

        def settled(result: Any) -> Any:
            exporter = self.exporter
            if exporter is None:
                return result
            attributes: List[Tuple[str, Any]] = [
                ("http.request.method", method.decode("latin-1")),
                ("server.address", target.config.host),
                ("server.port", target.config.port),
                ("url.full", target.url),
                ("twistgate.upstream", upstream),
            ]
            error = None
            if isinstance(result, Failure):
                error = result.type.__name__
                attributes.append(("error.type", error))
            else:
                code = getattr(result, "code", 0)
                attributes.append(("http.response.status_code", code))
                if code >= 500:
                    error = str(code)
            exporter.add(
                Span(
                    trace_id=parent.trace_id,
                    span_id=span_id,
                    parent_id=parent.parent_id,
                    name=f"{method.decode('latin-1')} {upstream}",
                    kind=CLIENT,
                    start=start,
                    end=self.clock.seconds(),
                    attributes=attributes,
                    error=error,
                )
            )
            return result

        return settled

    def traced_attempt(
        self, upstream: str, client: Any, target: Any, method: bytes, path: bytes, headers: Headers, body: Any
    ) -> Any:
        """
        One upstream attempt with a fresh child span id: the upstream's parent
        is the attempt, not the gateway's request span.  The request's headers
        are not touched (a retry must see the request span again): the attempt
        gets a shallow copy with its own ``traceparent``.
        """
        raw = headers.raw
        parent = parse_traceparent(raw.get(TRACEPARENT))
        if parent is None or self.exporter is None:
            return client.request(target, method, path, headers, body)
        span_id = self.random_id(8)
        attempt_headers = Headers()
        attempt_headers.raw = dict(raw)
        attempt_headers.raw[TRACEPARENT] = [TraceParent(parent.trace_id, span_id, parent.flags).header()]
        d = client.request(target, method, path, attempt_headers, body)
        if parent.sampled:
            d.addBoth(self.attempt(parent, span_id, upstream, target, method, self.clock.seconds()))
        return d

    # -- lifetime --------------------------------------------------------------

    def start(self) -> Any:
        if self.exporter is not None:
            return self.exporter.start()
        return None

    def stop(self) -> Any:
        if self.exporter is not None:
            return self.exporter.stop()
        return None
