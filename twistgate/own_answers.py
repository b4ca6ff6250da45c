"""
What ``defaults:`` gives the answers no route makes: 404 (no route), 405,
400 before routing, the 308 of ``redirect_https``, and the engine's own
refusals (413 before routing, 414, 431, 408).

Of the route keys, the response headers make sense there: ``headers``
(``response`` ``set`` / ``add``) and ``security_headers``.  They are built
once per generation from ``defaults`` as a route's would be; the engine's
refusals, written before any request exists, get the headers those stages
give a bare request (computed once, for HTTP and for HTTPS).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.python.failure import Failure

from twistgate.config.model import RouteConfig
from twistgate.errors import GatewayError
from twistgate.headers import Headers
from twistgate.messages import ProxyRequest, ProxyResponse

__all__ = ["OWN_ANSWER_POLICIES", "OwnAnswers", "build_own_answers"]

#: The policies of `defaults` that also dress the gateway's own answers.
OWN_ANSWER_POLICIES = ("headers", "security_headers")

HeaderPairs = Tuple[Tuple[bytes, bytes], ...]


class OwnAnswers:
    """The `defaults` stages for answers without a route."""

    def __init__(self, stages: List[Any]) -> None:
        self.stages = tuple(stages)
        self._static = (self._bare_headers(False), self._bare_headers(True))

    def on_error(self, request: ProxyRequest, failure: Failure) -> None:
        for stage in self.stages:
            stage.on_error(request, failure)

    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> None:
        for stage in self.stages:
            stage.on_response(request, response)

    def headers(self, secure: bool) -> HeaderPairs:
        """For an engine's refusal (no request to render templates with): fixed values only."""
        return self._static[secure]

    def _bare_headers(self, secure: bool) -> HeaderPairs:
        if not self.stages:
            return ()
        request = ProxyRequest(method=b"GET", path="/", headers=Headers(), scheme="https" if secure else "http")
        failure = Failure(GatewayError())
        self.on_error(request, failure)
        return tuple(failure.value.headers)


def build_own_answers(defaults: Optional[RouteConfig], services: Any) -> OwnAnswers:
    """The stages of `defaults` listed in `OWN_ANSWER_POLICIES`, built as for a route."""
    from twistgate import chain

    stages: List[Any] = []
    if defaults is not None:
        for policy in chain.POLICIES:
            if policy.name in OWN_ANSWER_POLICIES and policy.key in defaults.policies:
                stage = policy.build(defaults, services)
                if stage is not None:
                    stages.append(stage)
    return OwnAnswers(stages)
