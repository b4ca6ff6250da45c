"""
The ``forward`` authenticator in memory (a Clock, treq's in-memory agent): its
positive-answer cache lasts ``cache_ttl`` and no longer, is keyed by the
forwarded headers, and never holds a refusal; the ``timeout`` bounds the
subrequest.  The same over real sockets: tests/integration/test_edge_forward_auth.py.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistgate.headers import Headers
from twistgate.policies.auth.base import Answered, BackendUnavailable
from twistgate.policies.auth.config import ForwardConfig
from twistgate.policies.auth.forward import ForwardAuthenticator, forward_client


class Service(Resource):
    """Yes (X-User: the token's name) to `Bearer ok-NAME`; 401 to anything else; never answers while `hang`."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: List[bytes] = []
        self.hang = False

    def render(self, request: Any) -> Any:
        token = request.getHeader(b"Authorization") or b""
        self.asked.append(token)
        if self.hang:
            return NOT_DONE_YET
        if token.startswith(b"Bearer ok-"):
            request.setHeader(b"X-User", token[len(b"Bearer ok-") :])
            return b""
        request.setResponseCode(401)
        return b"no"


class Request:
    def __init__(self, token: str) -> None:
        self.headers = Headers({b"Authorization": [token.encode()]})
        self.method, self.uri, self.target = b"GET", b"/x", b"/x"
        self.host, self.scheme, self.client_ip, self.request_id = "gw.test", "http", "203.0.113.9", "r1"


def authenticator(service: Service, clock: Clock, **config: Any) -> ForwardAuthenticator:
    agent = RequestTraversalAgent(service)
    settings = ForwardConfig(name="ext", url="http://auth.test/check", consumer_header="X-User", **config)
    return ForwardAuthenticator(settings, forward_client(agent), clock)


def verify(auth: ForwardAuthenticator, token: str) -> Any:
    request = Request(token)
    result = auth.verify(request, auth.credentials(request))
    if not isinstance(result, Deferred):
        return result
    outcome: List[Any] = []
    result.addBoth(outcome.append)
    assert outcome, "the subrequest is still waiting"
    if isinstance(outcome[0], Exception) or hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    return outcome[0]


def test_a_positive_answer_is_cached_for_cache_ttl_and_no_longer():
    service, clock = Service(), Clock()
    auth = authenticator(service, clock, cache_ttl=30.0)
    assert verify(auth, "Bearer ok-alice").consumer == "alice"
    clock.advance(29)
    assert verify(auth, "Bearer ok-alice").consumer == "alice"
    assert len(service.asked) == 1  # from the cache
    assert verify(auth, "Bearer ok-bob").consumer == "bob"  # other forwarded headers: their own entry
    clock.advance(2)  # alice's answer is 31 s old
    assert verify(auth, "Bearer ok-alice").consumer == "alice"
    assert service.asked == [b"Bearer ok-alice", b"Bearer ok-bob", b"Bearer ok-alice"]


def test_refusals_are_never_cached_and_no_cache_by_default():
    service, clock = Service(), Clock()
    auth = authenticator(service, clock, cache_ttl=30.0)
    for _ in range(2):
        with pytest.raises(Answered):
            verify(auth, "Bearer bad")
    assert len(service.asked) == 2
    uncached = authenticator(service, clock)
    for _ in range(2):
        verify(uncached, "Bearer ok-alice")
    assert len(service.asked) == 4


def test_no_answer_within_the_timeout_is_unavailable():
    service, clock = Service(), Clock()
    service.hang = True
    auth = authenticator(service, clock, timeout=1.5)
    request = Request("Bearer ok-alice")
    outcome: List[Any] = []
    auth.verify(request, auth.credentials(request)).addBoth(outcome.append)
    clock.advance(1.4)
    assert outcome == []
    clock.advance(0.2)
    assert len(outcome) == 1 and outcome[0].check(BackendUnavailable)
