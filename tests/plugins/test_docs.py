"""The plugin author's guide keeps up with the hook specifications."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import twistgate.plugins
from twistgate.plugins import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


@pytest.mark.parametrize("hook", hookspecs.HOOK_NAMES)
def test_plugin_hooks_are_documented(hook):
    """docs/plugins.md shows each hook's exact signature (datasette's rule)."""
    signature = f"{hook}({', '.join(inspect.signature(getattr(hookspecs, hook)).parameters)})"
    assert signature in DOCS.read_text(encoding="utf-8")


def test_hook_names_match_the_specs():
    specs = {
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, "twistgate_spec")
    }
    assert specs == set(hookspecs.HOOK_NAMES)


def test_exports():
    """The public names are pinned (klein's test_exports)."""
    assert sorted(twistgate.plugins.__all__) == sorted([
        "BUILTIN_PLUGINS", "GatewayPlugins", "HOOK_NAMES", "PROJECT_NAME", "PluginContext", "PluginError",
        "PluginFactory", "PluginRegistry", "PluginStartupError", "PluginStore", "StoreUnavailable", "RouteChain", "RoutePlugins", "build_plugins",
        "hookimpl", "hookspec", "MaybeDone", "MaybeResponse",
        # what the hooks receive and answer with
        "Headers", "ProxyRequest", "ProxyResponse", "Response", "RouteInfo",
        "GatewayError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "PayloadTooLarge", "RateLimited", "TooManyRequests",
        "ServiceUnavailable", "UpstreamUnavailable", "UpstreamTimeout",
    ])  # fmt: skip
    for name in twistgate.plugins.__all__:
        assert getattr(twistgate.plugins, name) is not None
