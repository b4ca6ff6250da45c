"""
The gateway's own per-route stages and gateway-wide services.

Built-in policies (authentication, rate limiting, CORS, caching...) are
built the same way as plugins and run through the same per-route hook calls,
so the request path has one mechanism, not two:

* a **service** is built once per generation from a top-level extension
  section (``auth:``, ``rate_limiting:``...) — authenticators with their key
  caches, a rate-limit backend, an access log.  It may have ``start()`` and
  ``stop()`` (returning a Deferred or None), called when the generation starts
  serving and after it has drained.
* a **stage** is built once per route from a route extension section
  (``auth:``, ``rate_limit:``, ``cors:``...).  It is an object whose methods
  ``on_request``, ``on_response`` and ``on_error`` are marked with
  `twistgate.plugins.hookimpl` and have the plugin hook signatures.  Stages
  run before the route's plugins on the way in, in ascending ``order``, and
  after them on the way out, in descending order; a plugin marked
  ``tryfirst`` (ip_allow, maintenance) still runs before them.

Register with the decorators from a module in `twistgate/features/`:

    @stage("rate_limit", order=300)
    def rate_limit_stage(config, route, context):
        return RateLimitStage(config, context.services["rate_limiting"], context.clock)

Factories raise `ConfigError` (use the section config's location) for
cross-reference problems, such as a route naming an unknown authenticator.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

from twistgate.config import extensions
from twistgate.config.model import GatewayConfig, RouteConfig

#: Stage orders of the built-in policies (gaps leave room).  Requests pass
#: the stages in ascending order, responses in descending order (an onion),
#: and a stage that answers a request itself is unwound only through the
#: stages outside it.  Hence compression is outermost (it encodes whatever
#: goes out, cache hits included), and the cache sits inside CORS, auth and
#: rate limiting (each hit is still authorised, limited and given CORS
#: headers) but outside the transforms (a stored response is already
#: transformed, and is not transformed twice).
ORDER_COMPRESSION = 50
ORDER_CORS = 100
ORDER_AUTH = 200
ORDER_RATE_LIMIT = 300
ORDER_CACHE = 350
ORDER_TRANSFORM = 400


@attrs.define
class BuildContext:
    """What service and stage factories get."""

    config: GatewayConfig
    clock: Any  # IReactorTime
    http_client: Any  # a treq HTTPClient for side calls (JWKS, OTLP...), or None
    services: Dict[str, Any] = attrs.field(factory=dict)
    #: callables taking an `ExchangeRecord` when a request is over (metrics, logs).
    observers: List[Callable[[Any], None]] = attrs.field(factory=list)


ServiceFactory = Callable[[Any, BuildContext], Any]
StageFactory = Callable[[Any, RouteConfig, BuildContext], Optional[object]]

SERVICES: Dict[str, Tuple[ServiceFactory, bool]] = {}
STAGES: Dict[str, Tuple[int, StageFactory]] = {}

def service(key: str, *, always: bool = False) -> Callable[[ServiceFactory], ServiceFactory]:
    """
    Register a service factory for the top-level section ``key``.  With
    ``always=True`` it is built even when the section is absent (it gets
    None), for services with defaults (metrics, access log).
    """

    def decorate(factory: ServiceFactory) -> ServiceFactory:
        SERVICES[key] = (factory, always)
        return factory

    return decorate


def stage(key: str, *, order: int) -> Callable[[StageFactory], StageFactory]:
    """Register a stage factory for the route section ``key``."""

    def decorate(factory: StageFactory) -> StageFactory:
        STAGES[key] = (order, factory)
        return factory

    return decorate


def build_services(context: BuildContext) -> Dict[str, Any]:
    """Every service the config asks for (and the always-on ones), into context.services."""
    extensions.load_extensions()
    sections: Mapping[str, Any] = context.config.sections
    for key, (factory, always) in SERVICES.items():
        if key in sections or always:
            built = factory(sections.get(key), context)
            if built is not None:
                context.services[key] = built
    return context.services


#: Gateway-wide stages: built for every route from the top-level section
#: ``key`` (None when absent), e.g. tracing.  The factory may return None.
GLOBAL_STAGES: Dict[str, Tuple[int, StageFactory]] = {}


def global_stage(key: str, *, order: int) -> Callable[[StageFactory], StageFactory]:
    """Register a stage built for every route (gateway-wide behaviour)."""

    def decorate(factory: StageFactory) -> StageFactory:
        GLOBAL_STAGES[key] = (order, factory)
        return factory

    return decorate


def build_stages(route: RouteConfig, context: BuildContext) -> List[Tuple[str, object]]:
    """The route's stages, in running order, as (section key, stage object)."""
    built: List[Tuple[int, str, object]] = []
    for key, (order, factory) in GLOBAL_STAGES.items():
        obj = factory(context.config.sections.get(key), route, context)
        if obj is not None:
            built.append((order, key, obj))
    for key, section in route.policies.items():
        entry = STAGES.get(key)
        if entry is None:
            continue  # an upstream-level or passive section, not a stage
        order, factory = entry
        obj = factory(section, route, context)
        if obj is not None:
            built.append((order, key, obj))
    built.sort(key=lambda item: item[0])
    return [(key, obj) for _, key, obj in built]
