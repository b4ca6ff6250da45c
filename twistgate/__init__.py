"""
twistgate: an API gateway on Twisted.

The public API for plugin authors is small: `hookimpl` to mark hook
implementations, `Response` to answer a request, and the `GatewayError`
family to answer with an error.  Everything else lives in submodules.
"""

from twistgate._version import __version__
from twistgate.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from twistgate.messages import ProxyRequest, ProxyResponse, Response
from twistgate.plugins.hookspecs import hookimpl

__all__ = [
    "__version__",
    "hookimpl",
    "Response",
    "ProxyRequest",
    "ProxyResponse",
    "GatewayError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "UpstreamUnavailable",
    "UpstreamTimeout",
]
