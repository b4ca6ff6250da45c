"""
An authenticator from a package (``twistgate.authenticators``) as the auth
stage sees every authenticator: ``credentials`` / ``verify`` / ``strip`` /
``challenge`` (see `twistgate.policies.auth.base`).

Its one method, ``authenticate(request)``, answers None (refused: the next
authenticator of the route is tried, then 401) or a dict with at least
``consumer`` (str); ``scopes`` and ``roles`` (lists of str) count for a
route's ``scopes`` / ``roles``, every other key goes to
``request.state["auth"]``.  An exception, no answer within
`AUTHENTICATE_TIMEOUT` or any other answer is logged with the extension's
name and counts as an unavailable backend: 503 ``auth_unavailable`` unless
another authenticator of the route accepts the request.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twistgate.plugins.extension_points import AUTHENTICATORS
from twistgate.plugins.isolation import ExtensionFailed, Label, WrongAnswer, guarded_call
from twistgate.plugins.views import RequestInfo
from twistgate.policies.auth.base import BackendUnavailable, Identity, InvalidCredentials, challenge, header_value, is_token
from twistgate.policies.auth.config import PluginAuthConfig

__all__ = ["AUTHENTICATE_TIMEOUT", "PluginAuthenticator"]

#: How long a package's ``authenticate`` may take (seconds).
AUTHENTICATE_TIMEOUT = 5.0

_REFUSED = object()


class PluginAuthenticator:
    """Adapts a ``twistgate.authenticators`` object (see the module docstring)."""

    #: Its identities may carry scopes and roles (routes may ask for them).
    grants_scopes = True

    def __init__(self, plugin: Any, config: PluginAuthConfig, clock: Any) -> None:
        self.plugin = plugin
        self.config = config
        self.name = config.name
        self.kind = config.type
        self.clock = clock
        self.label = Label(AUTHENTICATORS, config.type, "authenticate", f"auth.{config.name}")
        scheme = config.type if is_token(config.type) else "Custom"
        self._challenge = challenge(scheme, realm=config.realm)

    def credentials(self, request: Any) -> Any:
        return request  # what counts as a credential is the extension's business

    def verify(self, request: Any, credentials: Any) -> Any:
        try:
            answer = guarded_call(
                self.plugin.authenticate,
                (RequestInfo(request),),
                label=self.label,
                clock=self.clock,
                timeout=AUTHENTICATE_TIMEOUT,
                check=self._identity,
            )
        except ExtensionFailed as failed:
            raise BackendUnavailable(failed.reason) from None
        if isinstance(answer, Deferred):
            return answer.addCallbacks(_decided, _unavailable)
        return _decided(answer)

    def strip(self, request: Any) -> None:
        """The gateway does not know which headers the extension read: nothing is removed."""

    def challenge(self, error: Optional[InvalidCredentials]) -> bytes:
        return self._challenge

    def _identity(self, answer: Any) -> Any:
        if answer is None:
            return _REFUSED
        if not isinstance(answer, dict):
            raise WrongAnswer(f"returned {type(answer).__name__}, not None or a dict with 'consumer'")
        consumer = answer.get("consumer")
        if not isinstance(consumer, str) or not consumer:
            raise WrongAnswer("returned a dict without a 'consumer' string")
        scopes, roles = _strings(answer, "scopes"), _strings(answer, "roles")
        details: Dict[str, Any] = {k: v for k, v in answer.items() if k not in ("scopes", "roles")}
        details.update(authenticator=self.name, type=self.kind, consumer=consumer)
        if scopes:
            details["scopes"] = sorted(scopes)
        if roles:
            details["roles"] = sorted(roles)
        headers: Tuple[Tuple[bytes, bytes], ...] = ()
        forward = self.config.forward_consumer
        value = header_value(consumer) if forward else None
        if forward and value is not None:
            headers = ((forward.encode("ascii"), value),)
        return Identity(
            consumer=consumer,
            authenticator=self.name,
            kind=self.kind,
            scopes=frozenset(scopes),
            roles=frozenset(roles),
            details=details,
            headers=headers,
        )


def _strings(answer: Dict[str, Any], key: str) -> Tuple[str, ...]:
    value = answer.get(key, ())
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise WrongAnswer(f"returned {key!r} as {type(value).__name__}, not a list of strings")
    if not all(isinstance(v, str) for v in value):
        raise WrongAnswer(f"returned {key!r} with an item that is not a string")
    return tuple(value)


def _decided(answer: Any) -> Identity:
    if answer is _REFUSED:
        raise InvalidCredentials("refused by the authenticator")
    return answer  # type: ignore[no-any-return]


def _unavailable(failure: Failure) -> None:
    failed = failure.trap(ExtensionFailed)
    raise BackendUnavailable(failure.value.reason if failed else "failed")
