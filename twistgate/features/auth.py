"""Authentication: the top-level ``auth:`` section, its service, and the per-route ``auth:`` stage."""

from __future__ import annotations

from typing import Any, Optional

from twistgate.policies.auth.config import AuthSection, RouteAuthConfig
from twistgate.policies.auth.parse import parse_auth_section, parse_route_auth
from twistgate.policies.auth.policy import AuthStage, IdentityHeaderScrub, build_stage
from twistgate.policies.auth.service import AuthService
from twistgate.config.extensions import gateway_section, route_section
from twistgate.config.model import RouteConfig
from twistgate.stages import ORDER_AUTH, BuildContext, global_stage, service, stage

gateway_section("auth")(parse_auth_section)
route_section("auth")(parse_route_auth)


@service("auth")
def auth_service(section: Optional[AuthSection], context: BuildContext) -> Optional[AuthService]:
    return AuthService(section, context) if section is not None else None


@stage("auth", order=ORDER_AUTH)
def auth_stage(config: RouteAuthConfig, route: RouteConfig, context: BuildContext) -> AuthStage:
    return build_stage(config, route, context)


def identity_header_scrub(section: Any, route: RouteConfig, context: BuildContext) -> Optional[IdentityHeaderScrub]:
    """
    On routes WITHOUT ``auth:``, still remove client-sent copies of the
    identity headers the gateway sets elsewhere: an upstream that trusts
    X-User-Id on its private routes must never see a forged one from a
    public route.  (Routes with ``auth:`` do this in their own stage.)
    """
    auth = context.services.get("auth")
    if "auth" in route.policies or auth is None or not auth.identity_headers:
        return None
    return IdentityHeaderScrub(auth.identity_headers)


# Client copies of identity headers are scrubbed on every route, auth or not.
global_stage("auth_identity_headers", order=ORDER_AUTH - 1)(identity_header_scrub)

__all__ = ["auth_service", "auth_stage", "identity_header_scrub"]
