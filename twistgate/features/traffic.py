"""
Traffic policy (docs/traffic.md): rate limiting, CORS and transformations.

Registers the config sections, the rate-limit backend service and the
per-route stages; the code lives in `twistgate.policies.ratelimit`, `twistgate.policies.cors`
and `twistgate.policies.transform.headers*`.
"""

from __future__ import annotations

from typing import Any, Optional

from twistgate.config.extensions import gateway_section, route_section
from twistgate.config.model import RouteConfig
from twistgate.policies.cors import CorsConfig, CorsStage, cors_stage, parse_cors
from twistgate.policies.ratelimit import RateLimitStage, build_backend
from twistgate.policies.ratelimit.config import RateLimitConfig, RateLimitingConfig, parse_rate_limit, parse_rate_limiting
from twistgate.stages import ORDER_CORS, ORDER_RATE_LIMIT, ORDER_TRANSFORM, BuildContext, service, stage
from twistgate.policies.transform.headers import HeadersConfig, HeadersStage, headers_stage, parse_headers
from twistgate.policies.transform.request import (
    QueryConfig,
    QueryStage,
    RewriteConfig,
    RewriteStage,
    parse_query,
    parse_rewrite,
    query_stage,
    rewrite_stage,
)
from twistgate.policies.transform.response import (
    JsonEnvelopeConfig,
    JsonEnvelopeStage,
    SecurityHeadersConfig,
    SecurityHeadersStage,
    parse_json_envelope,
    parse_security_headers,
)

# -- rate limiting ----------------------------------------------------------

gateway_section("rate_limiting")(parse_rate_limiting)
route_section("rate_limit")(parse_rate_limit)


@service("rate_limiting", always=True)
def rate_limit_backend(section: Optional[RateLimitingConfig], context: BuildContext) -> Any:
    return build_backend(section, context.clock)


@stage("rate_limit", order=ORDER_RATE_LIMIT)
def rate_limit_stage(config: RateLimitConfig, route: RouteConfig, context: BuildContext) -> RateLimitStage:
    section = context.config.sections.get("rate_limiting") or RateLimitingConfig()
    return RateLimitStage(
        config,
        route.name,
        context.services["rate_limiting"],
        on_backend_error=section.on_backend_error,
        key_prefix=section.key_prefix,
    )


# -- CORS ---------------------------------------------------------------------

route_section("cors")(parse_cors)


@stage("cors", order=ORDER_CORS)
def make_cors_stage(config: CorsConfig, route: RouteConfig, context: BuildContext) -> CorsStage:
    return cors_stage(config, route)


# -- transformations -------------------------------------------------------------
# One stage per section, in this order within the transform slot: the path
# and query are rewritten before the headers (whose substitutions may use
# them); on the way back, the route's own header edits come before the
# security preset (which only fills in what is missing) and the envelope.

route_section("rewrite")(parse_rewrite)
route_section("query")(parse_query)
route_section("headers")(parse_headers)
route_section("security_headers")(parse_security_headers)
route_section("json_envelope")(parse_json_envelope)


@stage("rewrite", order=ORDER_TRANSFORM)
def make_rewrite_stage(config: RewriteConfig, route: RouteConfig, context: BuildContext) -> RewriteStage:
    return rewrite_stage(config, route)


@stage("query", order=ORDER_TRANSFORM + 1)
def make_query_stage(config: QueryConfig, route: RouteConfig, context: BuildContext) -> QueryStage:
    return query_stage(config, route)


@stage("headers", order=ORDER_TRANSFORM + 2)
def make_headers_stage(config: HeadersConfig, route: RouteConfig, context: BuildContext) -> HeadersStage:
    return headers_stage(config, route)


@stage("security_headers", order=ORDER_TRANSFORM + 3)
def make_security_headers_stage(
    config: SecurityHeadersConfig, route: RouteConfig, context: BuildContext
) -> SecurityHeadersStage:
    return SecurityHeadersStage(config)


@stage("json_envelope", order=ORDER_TRANSFORM + 4)
def make_json_envelope_stage(
    config: JsonEnvelopeConfig, route: RouteConfig, context: BuildContext
) -> JsonEnvelopeStage:
    return JsonEnvelopeStage(config)
