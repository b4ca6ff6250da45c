"""
Third-party balancers, health checks and discovery sources behind the
interfaces the upstream uses for its own (`pick`, `probe` / `verdict`,
`fetch`).  Each call goes through `guarded_call`: an exception, a hang or an
answer of the wrong type is logged with the extension's name and becomes a
503 for that request (balancer), an unhealthy probe (health check) or the
last good target list (discovery).  Nothing a plugin does stops the
gateway.

The bounds: a balancer's ``choose`` gets `CHOOSE_TIMEOUT`; a health check's
``check`` the check's ``timeout``; a source's ``targets()`` its
``timeout`` (the interval by default).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from twisted.internet.defer import Deferred, maybeDeferred

from twistgate.errors import GatewayError
from twistgate.plugins.isolation import ExtensionFailed, Label, WrongAnswer, guarded_call
from twistgate.plugins.views import RequestInfo, TargetInfo, target_of
from twistgate.upstream.discovery import Resolved
from twistgate.upstream.targets_from import resolved_from_urls

__all__ = ["CHOOSE_TIMEOUT", "BalancerFailed", "PluginBalancer", "PluginDiscovery", "PluginHealthCheck"]

#: How long a third-party balancer may take to choose (seconds).
CHOOSE_TIMEOUT = 1.0


class BalancerFailed(GatewayError):
    """The upstream's balancer (an extension) failed: the request cannot be placed."""

    status, code = 503, "balancer_error"
    default_message = "The gateway could not choose an upstream target."


class PluginBalancer:
    """A ``twistgate.balancers`` object as the upstream's strategy."""

    def __init__(self, plugin: Any, label: Label, clock: Any) -> None:
        self.plugin = plugin
        self.label = label
        self.clock = clock
        self._views: Dict[Any, TargetInfo] = {}

    def rebuild(self, targets: Sequence[Any]) -> None:
        self._views = {target: self._views.get(target) or TargetInfo(target) for target in targets}

    def select(self, candidates: Sequence[Any], request: Any) -> Any:
        """A candidate (or a Deferred of one); raises / fails with `BalancerFailed`."""
        views = [self._views.get(t) or TargetInfo(t) for t in candidates]

        def one_of(answer: Any) -> Any:
            if isinstance(answer, TargetInfo):
                chosen = target_of(answer)
                for target in candidates:
                    if target is chosen:
                        return target
            raise WrongAnswer(f"returned {answer!r}, not one of the {len(views)} targets it was given")

        try:
            chosen = guarded_call(
                self.plugin.choose,
                (views, RequestInfo(request)),
                label=self.label,
                clock=self.clock,
                timeout=CHOOSE_TIMEOUT,
                check=one_of,
            )
        except ExtensionFailed as failed:
            raise BalancerFailed() from failed
        if isinstance(chosen, Deferred):
            return chosen.addErrback(_as_balancer_failure)
        return chosen


def _as_balancer_failure(failure: Any) -> Any:
    failure.trap(ExtensionFailed)
    raise BalancerFailed()


class PluginHealthCheck:
    """A ``twistgate.health_checks`` object as the upstream's probe."""

    def __init__(self, plugin: Any, label: Label, clock: Any, timeout: float) -> None:
        self.plugin = plugin
        self.label = label
        self.clock = clock
        self.timeout = timeout

    def probe(self, target: Any) -> "Deferred[bool]":
        return maybeDeferred(
            guarded_call,
            self.plugin.check,
            (TargetInfo(target),),
            label=self.label,
            clock=self.clock,
            timeout=self.timeout,
            check=_boolean,
        )

    def verdict(self, healthy: bool) -> Any:
        return None if healthy else f"health check {self.label.name!r} said unhealthy"


def _boolean(answer: Any) -> bool:
    if isinstance(answer, bool):
        return answer
    raise WrongAnswer(f"returned {answer!r} ({type(answer).__name__}), not True or False")


class PluginDiscovery:
    """A ``twistgate.discovery`` object as the upstream's target source."""

    def __init__(self, plugin: Any, label: Label, clock: Any, timeout: float) -> None:
        self.plugin = plugin
        self.label = label
        self.clock = clock
        self.timeout = timeout

    def fetch(self) -> "Deferred[List[Resolved]]":
        return maybeDeferred(
            guarded_call,
            self.plugin.targets,
            (),
            label=self.label,
            clock=self.clock,
            timeout=self.timeout,
            check=resolved_from_urls,
        )
