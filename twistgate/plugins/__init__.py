"""
twistgate plugins: pluggy hooks called around every proxied request.

Write a plugin as a class with ``@hookimpl`` methods named after the hooks in
`twistgate.plugins.hookspecs`, plus a factory ``(options, context) -> plugin``
published in the ``twistgate`` entry point group.  See ``docs/plugins.md``.
"""

from twistgate.plugins.hookspecs import PROJECT_NAME, hookimpl, hookspec
from twistgate.plugins.manager import (
    BUILTIN_PLUGINS,
    GatewayPlugins,
    PluginContext,
    PluginError,
    PluginFactory,
    PluginRegistry,
    PluginStartupError,
    RoutePlugins,
    build_plugins,
)

__all__ = [
    "BUILTIN_PLUGINS",
    "GatewayPlugins",
    "PROJECT_NAME",
    "PluginContext",
    "PluginError",
    "PluginFactory",
    "PluginRegistry",
    "PluginStartupError",
    "RoutePlugins",
    "build_plugins",
    "hookimpl",
    "hookspec",
]
