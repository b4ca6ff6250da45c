"""
`UpstreamEvents`: what upstream groups report, delivered to the generation
that serves now.

An `Upstream` outlives a reload that leaves its configuration unchanged, but
the plugins (``on_breaker_state_change``) and the tracer of the generation
that built it do not.  So every upstream gets one `UpstreamEvents` in its
constructor, shared by the generations of a gateway, and a generation that
starts serving makes itself its listener (`serve`): one explicit assignment
at the swap, instead of rewriting the upstreams' methods.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["UpstreamEvents", "call_breaker_hook"]

_log = Logger()


class UpstreamEvents:
    """
    :ivar plugins: the serving generation's `GatewayPlugins` (breaker hook).
    :ivar tracer: the serving generation's tracer, or None (no attempt spans).
    """

    def __init__(self) -> None:
        self.plugins: Any = None
        self.tracer: Any = None

    def serve(self, plugins: Any, tracer: Any) -> None:
        """From now on, report to these (the generation that starts serving)."""
        self.plugins = plugins
        self.tracer = tracer

    def breaker_changed(self, upstream: str, target: str, old: str, new: str) -> None:
        if self.plugins is not None:
            call_breaker_hook(self.plugins.manager, {"upstream": upstream, "target": target, "old": old, "new": new})

    def send_attempt(
        self, upstream: str, client: Any, target: Any, method: bytes, path: bytes, headers: Any, body: Any
    ) -> "Deferred[Any]":
        """One attempt through `client`, with its own span when the tracer exports spans."""
        tracer = self.tracer
        if tracer is None or tracer.exporter is None:
            return client.request(target, method, path, headers, body)
        return tracer.traced_attempt(upstream, client, target, method, path, headers, body)


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


def _hook_failed(failure: Failure, plugin: str) -> Optional[Failure]:
    _log.failure("plugin {plugin!r} failed in on_breaker_state_change", failure, plugin=plugin)
    return None
