"""
twistgate plugins: the public API for plugin authors.

Write a plugin as a class with ``@hookimpl`` methods named after the hooks in
`twistgate.plugins.hookspecs` (each documented there with its arguments'
types), plus a factory ``(options, context) -> plugin`` published in the
``twistgate`` entry point group.  What the hooks receive are the runtime
classes exported here: `ProxyRequest`, `ProxyResponse`, `RouteInfo` and
`Headers`; a plugin answers with a `Response` or raises a `GatewayError`
subclass for the gateway's own JSON error.  A factory declares its options
(``Options``, `twistgate.plugins.options`) and gets a `PluginContext`:
``clock``, ``http_client``, ``store`` (a `PluginStore`, kept across
reloads), ``metrics`` and ``log``.  Tests use `twistgate.testing` and the
pytest fixtures of `twistgate.pytest_plugin`.  See ``docs/plugins.md``.
"""

from twistgate.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from twistgate.headers import Headers
from twistgate.messages import ProxyRequest, ProxyResponse, Response, RouteInfo
from twistgate.plugins.calls import PluginError, RouteChain, RoutePlugins
from twistgate.plugins.hookspecs import HOOK_NAMES, PROJECT_NAME, MaybeDone, MaybeResponse, hookimpl, hookspec
from twistgate.plugins.instances import build_plugins
from twistgate.plugins.lifecycle import GatewayPlugins, PluginStartupError
from twistgate.plugins.registry import BUILTIN_PLUGINS, PluginContext, PluginFactory, PluginRegistry
from twistgate.plugins.store import PluginStore, StoreUnavailable

__all__ = [
    "BUILTIN_PLUGINS",
    "BadRequest",
    "Forbidden",
    "GatewayError",
    "GatewayPlugins",
    "HOOK_NAMES",
    "Headers",
    "NotFound",
    "MaybeDone",
    "MaybeResponse",
    "PROJECT_NAME",
    "PayloadTooLarge",
    "PluginContext",
    "PluginError",
    "PluginFactory",
    "PluginRegistry",
    "PluginStartupError",
    "PluginStore",
    "ProxyRequest",
    "ProxyResponse",
    "RateLimited",
    "Response",
    "RouteChain",
    "RouteInfo",
    "RoutePlugins",
    "ServiceUnavailable",
    "StoreUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "build_plugins",
    "hookimpl",
    "hookspec",
]
