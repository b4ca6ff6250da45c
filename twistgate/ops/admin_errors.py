"""The admin API's own refusals (each answered with the contract's JSON error body)."""

from __future__ import annotations

from twistgate.errors import GatewayError

__all__ = ["AdminUnauthorized", "MethodNotAllowed", "NotFound"]


class NotFound(GatewayError):
    status, code, default_message = 404, "not_found", "No such admin resource."


class MethodNotAllowed(GatewayError):
    status, code, default_message = 405, "method_not_allowed", "The admin resource does not accept this method."


class AdminUnauthorized(GatewayError):
    status, code, default_message = 401, "unauthorized", "A valid admin bearer token is required."
