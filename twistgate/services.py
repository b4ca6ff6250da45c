"""
What a generation builds once and its policies share: authenticators, the
rate-limit backend, the cache store, the tracer, the access log, metrics.

Built explicitly, one line each, from the configuration's top-level
sections (`build_services`); the policies receive the typed `Services`
value, never a string-keyed lookup.  Objects with a lifetime have
``start()`` / ``stop()``; `Services.lifetimes` lists them in start order.
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Tuple

import attrs

from twistgate.config.model import GatewayConfig
from twistgate.files import FileMaterial
from twistgate.ops.accesslog import AccessLog
from twistgate.ops.otlp import OTLPExporter
from twistgate.ops.runtime import Operations
from twistgate.ops.settings import TracingSettings
from twistgate.ops.tracing import Tracer
from twistgate.plugins.store import MemoryStore
from twistgate.plugins.store_config import build_store_backend, effective
from twistgate.policies.auth.service import AuthService
from twistgate.policies.cache.service import CacheService
from twistgate.policies.ratelimit import build_backend
from twistgate.policies.ratelimit.config import RateLimitingConfig

__all__ = ["Services", "build_services"]


@attrs.frozen(eq=False)
class Services:
    """
    :ivar config: the whole configuration (policies read their defaults here).
    :ivar clock: the gateway's `IReactorTime`.
    :ivar http_client: a treq `HTTPClient` for the gateway's own calls (JWKS, OTLP, plugins).
    :ivar ops: metrics, stats and reload history; outlives generations.
    :ivar auth: the authenticators of the ``auth:`` section, or None.
    :ivar rate_limiting: the ``rate_limiting:`` section (defaults when absent).
    :ivar rate_limits: its backend (memory or Redis).
    :ivar cache: the shared response cache.
    :ivar tracer: the tracer, or None when propagation is off.
    :ivar access_log: the access log, or None.
    :ivar plugin_store: the backend of the plugins' ``context.store``
        (memory, kept across generations, or Redis).
    :ivar observers: callables given each finished exchange's record.
    :ivar upstreams: the generation's upstream groups, by name (a policy that
        sends requests of its own, such as a cache revalidation, uses them).
    """

    config: GatewayConfig
    clock: Any
    http_client: Any
    ops: Operations
    auth: Optional[AuthService]
    rate_limiting: RateLimitingConfig
    rate_limits: Any
    cache: CacheService
    tracer: Optional[Tracer]
    access_log: Optional[AccessLog]
    observers: Tuple[Callable[[Any], None], ...]
    upstreams: Mapping[str, Any] = attrs.field(factory=dict)
    plugin_store: Any = None

    @property
    def lifetimes(self) -> List[Any]:
        """The services with ``start()`` / ``stop()``, in start order."""
        candidates = (self.auth, self.rate_limits, self.plugin_store, self.tracer, self.access_log)
        return [s for s in candidates if s is not None]


def build_services(
    config: GatewayConfig,
    clock: Any,
    http_client: Any,
    ops: Operations,
    upstreams: Mapping[str, Any],
    files: Optional[FileMaterial] = None,
    side_agent: Any = None,
    plugin_memory: Optional[MemoryStore] = None,
    *,
    memory_limits: Optional[Callable[[Any, Any], Any]] = None,
) -> Services:
    """
    Every service the configuration asks for, built once for one generation.

    :param side_agent: the `Agent` under `http_client` (the gateway's own
        calls), for clients that must not share its cookie jar.
    :param plugin_memory: the gateway's in-memory plugin store, which
        outlives generations (`twistgate.generation.Shared`).
    :param memory_limits: builds the ``memory`` rate-limit backend instead of
        an in-process one (a worker's, decided by its supervisor).
    """
    sections = config.sections
    auth_section = sections.get("auth")
    auth = None
    if auth_section is not None:
        auth = AuthService(
            auth_section, clock=clock, http_client=http_client, files=files, side_agent=side_agent,
            key_usage=getattr(ops, "key_usage", None),
        )
    rate_limiting = sections.get("rate_limiting") or RateLimitingConfig()
    cache = CacheService(sections.get("cache"))
    tracer = _tracer(sections.get("tracing"), clock, http_client, ops)
    access_log = None
    if sections.get("access_log") is not None:
        AccessLog.check(sections["access_log"])  # a stat: the directory must exist
        access_log = AccessLog(sections["access_log"], clock=clock)
    # `ops.observe`'s one step, bound here: a call less per request.
    observers: List[Callable[[Any], None]] = [ops.pending.add]
    if any("cache" in route.policies for route in config.routes):
        observers.append(cache.observe)  # only then: it makes every request build its record
    if access_log is not None:
        observers.append(access_log.observe)
    if tracer is not None and tracer.exporter is not None:
        observers.append(tracer.observe)
    return Services(
        config=config,
        clock=clock,
        http_client=http_client,
        ops=ops,
        auth=auth,
        rate_limiting=rate_limiting,
        rate_limits=(
            memory_limits(rate_limiting, clock)
            if memory_limits is not None and rate_limiting.redis is None
            else build_backend(rate_limiting, clock)
        ),
        cache=cache,
        tracer=tracer,
        access_log=access_log,
        observers=tuple(observers),
        upstreams=upstreams,
        plugin_store=build_store_backend(effective(sections.get("plugin_store"), rate_limiting), clock, plugin_memory),
    )


def _tracer(section: Optional[TracingSettings], clock: Any, http_client: Any, ops: Operations) -> Optional[Tracer]:
    settings = section if section is not None else TracingSettings()
    if not settings.propagate:
        return None
    exporter = None
    if settings.otlp_endpoint is not None:
        metrics = ops.metrics
        exporter = OTLPExporter(
            settings,
            clock,
            http_client,
            on_drop=lambda n: metrics.spans_dropped.inc(n),
            on_export=lambda n, ok: (metrics.spans_exported if ok else metrics.spans_dropped).inc(n),
        )
    return Tracer(settings, clock, exporter)
