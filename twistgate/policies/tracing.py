"""Tracing as a layer of every route: continue or start the W3C trace (the tracer is `twistgate.ops.tracing`)."""

from __future__ import annotations

from typing import Any, Optional

from twistgate.config.model import RouteConfig
from twistgate.ops.tracing import TraceStage
from twistgate.policies import BLIND, Policy


def _build(route: RouteConfig, services: Any) -> Optional[TraceStage]:
    return TraceStage(services.tracer) if services.tracer is not None else None


#: First: every later layer and plugin sees the trace.
POLICY = Policy(name="tracing", build=_build, sight=BLIND)  # traceparent and tracestate only
