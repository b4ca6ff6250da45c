"""
Operations (issue #6): the ``admin``, ``access_log``, ``tracing`` and
``reload`` sections; the metrics/stats observer, the access log and the
tracer as services; the tracing stage on every route.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from twistgate.config.extensions import gateway_section
from twistgate.config.model import ConfigError, ConfigIssue
from twistgate.ops import settings
from twistgate.ops.accesslog import AccessLog
from twistgate.ops.otlp import OTLPExporter
from twistgate.ops.runtime import operations_of
from twistgate.ops.tracing import Tracer, TraceStage
from twistgate.stages import global_stage, service

gateway_section("admin")(settings.parse_admin)
gateway_section("access_log")(settings.parse_access_log)
gateway_section("tracing")(settings.parse_tracing)
gateway_section("reload")(settings.parse_reload)

ORDER_TRACING = 10  # first: later stages and plugins see the trace


class MetricsObserver:
    """Feeds the gateway's shared `Operations`; adopts the first generation when nothing else does."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops

    def attach_generation(self, generation: Any) -> None:
        if self.ops.current is None:
            self.ops.adopt(generation)


@service("metrics", always=True)
def make_metrics(section: Any, context: Any) -> MetricsObserver:
    ops = operations_of(context)
    context.observers.append(ops.observe)
    return MetricsObserver(ops)


@service("admin")
def make_admin(section: Optional[settings.AdminSettings], context: Any) -> Any:
    """Refuse an admin endpoint that is also a public listener's."""
    if section is None:
        return None
    for index, listener in enumerate(context.config.listeners):
        if same_address(section.endpoint, listener.endpoint):
            raise ConfigError(
                [
                    ConfigIssue(
                        location=section.location,
                        message=(
                            f"admin.endpoint {section.endpoint!r} is the address of listener "
                            f"{listener.name!r} (listeners[{index}]); the admin API must never be on a public listener"
                        ),
                    )
                ]
            )
    return section


@service("access_log")
def make_access_log(section: Optional[settings.AccessLogSettings], context: Any) -> Any:
    if section is None:
        return None
    AccessLog.check(section)
    access_log = AccessLog(section, clock=context.clock)
    context.observers.append(access_log.observe)
    return access_log


@service("tracing", always=True)
def make_tracer(section: Optional[settings.TracingSettings], context: Any) -> Any:
    config = section if section is not None else settings.TracingSettings()
    if not config.propagate:
        return None
    exporter = None
    if config.otlp_endpoint is not None:
        metrics = operations_of(context).metrics
        exporter = OTLPExporter(
            config,
            context.clock,
            context.http_client,
            on_drop=lambda n: metrics.spans_dropped.inc(n),
            on_export=lambda n, ok: (metrics.spans_exported if ok else metrics.spans_dropped).inc(n),
        )
    tracer = Tracer(config, context.clock, exporter)
    if exporter is not None:
        context.observers.append(tracer.observe)
    return tracer


@global_stage("tracing", order=ORDER_TRACING)
def make_trace_stage(section: Any, route: Any, context: Any) -> Optional[TraceStage]:
    tracer = context.services.get("tracing")
    return TraceStage(tracer) if tracer is not None else None


def same_address(a: str, b: str) -> bool:
    """Whether two server endpoint strings would bind the same address (port 0 never clashes)."""
    try:
        ea, eb = serverFromString(MemoryReactor(), a), serverFromString(MemoryReactor(), b)
    except Exception:
        return a == b
    pa, pb = getattr(ea, "_port", None), getattr(eb, "_port", None)
    if pa is not None and pb is not None:
        if pa != pb or pa == 0:
            return False
        ia, ib = getattr(ea, "_interface", ""), getattr(eb, "_interface", "")
        return ia == ib or ia in ("", "0.0.0.0", "::") or ib in ("", "0.0.0.0", "::")
    aa, ab = getattr(ea, "_address", None), getattr(eb, "_address", None)
    if aa is not None or ab is not None:
        return aa == ab
    return a == b
