"""
Breaker transitions, out to the plugins' ``on_breaker_state_change`` hook.

The hook is not a per-request hook, so it is called straight through the
generation's pluggy manager: every implementation, each with the arguments
it asks for (pluggy's opt-in arguments); a failing plugin is logged and the
others still get the call.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()

#: notify(upstream=name, target=url, old=state, new=state): breaker transitions.
BreakerNotifier = Callable[..., None]


def plugin_notifier(generation: Any) -> BreakerNotifier:
    """Breaker transitions to every plugin's ``on_breaker_state_change`` (looked up when they happen)."""

    def notify(**change: str) -> None:
        plugins = getattr(generation, "plugins", None)
        if plugins is not None:
            call_breaker_hook(plugins.manager, change)

    return notify


def call_breaker_hook(manager: Any, change: Dict[str, str]) -> None:
    """Call each implementation with the arguments it asks for; failures are logged, never raised."""
    caller = getattr(manager.hook, "on_breaker_state_change", None)
    if caller is None:
        return
    for impl in caller.get_hookimpls():
        try:
            result = impl.function(*[change[name] for name in impl.argnames])
            if isinstance(result, Deferred):
                result.addErrback(_hook_failed, impl.plugin_name)
            elif hasattr(result, "__await__"):
                Deferred.fromCoroutine(result).addErrback(_hook_failed, impl.plugin_name)
        except Exception:
            _hook_failed(Failure(), impl.plugin_name)


def _hook_failed(failure: Failure, plugin: str) -> None:
    _log.failure("plugin {plugin!r} failed in on_breaker_state_change", failure, plugin=plugin)
