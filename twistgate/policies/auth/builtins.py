"""
The built-in authenticator types as ``twistgate.authenticators`` factories:
``api_key``, ``jwt``, ``basic`` and ``mtls``, resolved through the same
registry and called the same way as a package's.

Their options are read by the rich parsers of `twistgate.policies.auth.parse`
(cross-key rules, one message per mistake), and what they need from the
gateway over time (shared key stores and their threads, the bcrypt threads,
JWKS refreshes) is the `AuthService`'s: it arrives as the context's
``internal`` (`AuthSupport`).  Each returns a `BuiltinAuthenticator`: the
public ``authenticate(request)`` over the authenticator the auth stage
uses directly (`inner`, with ``credentials`` / ``verify``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from twistgate.config.model import Location
from twistgate.plugins.extension_points import ExtensionContext
from twistgate.plugins.options import OptionsSpec
from twistgate.plugins.views import RequestInfo, request_of
from twistgate.policies.auth.base import Identity, InvalidCredentials
from twistgate.policies.auth.config import ApiKeyConfig, BasicConfig, ForwardConfig, JwtConfig, MtlsConfig

__all__ = ["AuthSupport", "BuiltinAuthenticator", "api_key", "basic", "forward", "jwt", "mtls"]


@attrs.frozen
class AuthSupport:
    """`ExtensionContext.internal` for the built-in types: the service, and the authenticator's name and place."""

    service: Any  # twistgate.policies.auth.service.AuthService
    name: str
    location: Location
    peer_identity: Optional[Callable[[Any], Any]] = None


class _ParsedByAuthSection(OptionsSpec):
    """The built-in types' options are read by `twistgate.policies.auth.parse`, key by key."""

    def read(self, fields: Any, reserved: Any) -> Optional[Dict[str, Any]]:
        raise TypeError("the built-in authenticator types are read by twistgate.policies.auth.parse")

    def describe(self) -> Any:
        from twistgate.plugins.options import OptionInfo

        return [OptionInfo(name="see docs/auth.md", documented=False)]


class BuiltinAuthenticator:
    """A built-in authenticator with the extension point's public method."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def authenticate(self, request: RequestInfo) -> "Deferred[Optional[Dict[str, Any]]]":
        """None when refused (or no credentials), else the identity's details (with ``consumer``)."""
        raw = request_of(request)
        credentials = self.inner.credentials(raw)
        if credentials is None:
            return maybeDeferred(lambda: None)

        def refused(failure: Failure) -> None:
            failure.trap(InvalidCredentials)
            return None

        def details(identity: Identity) -> Dict[str, Any]:
            return {**identity.details, "consumer": identity.consumer}

        return maybeDeferred(self.inner.verify, raw, credentials).addCallbacks(details, refused)


def _support(context: ExtensionContext) -> AuthSupport:
    if not isinstance(context.internal, AuthSupport):
        raise TypeError("the built-in authenticators are made by the auth service")
    return context.internal


def _config(cls: Any, options: Mapping[str, Any], support: AuthSupport) -> Any:
    return cls(name=support.name, location=support.location, **options)


def api_key(options: Mapping[str, Any], context: ExtensionContext) -> BuiltinAuthenticator:
    """API keys in a header, checked against a key store (SQLite or PostgreSQL)."""
    support = _support(context)
    return BuiltinAuthenticator(support.service.build_api_key(_config(ApiKeyConfig, options, support)))


def jwt(options: Mapping[str, Any], context: ExtensionContext) -> BuiltinAuthenticator:
    """JSON Web Tokens: HS* secrets or RS*/ES*/EdDSA keys from a JWKS URL."""
    support = _support(context)
    return BuiltinAuthenticator(support.service.build_jwt(_config(JwtConfig, options, support)))


def basic(options: Mapping[str, Any], context: ExtensionContext) -> BuiltinAuthenticator:
    """HTTP Basic authentication against an htpasswd file (bcrypt)."""
    support = _support(context)
    return BuiltinAuthenticator(support.service.build_basic(_config(BasicConfig, options, support)))


def mtls(options: Mapping[str, Any], context: ExtensionContext) -> BuiltinAuthenticator:
    """The identity of the client certificate of an mTLS listener."""
    support = _support(context)
    return BuiltinAuthenticator(support.service.build_mtls(_config(MtlsConfig, options, support), support.peer_identity))


def forward(options: Mapping[str, Any], context: ExtensionContext) -> BuiltinAuthenticator:
    support = _support(context)
    return BuiltinAuthenticator(support.service.build_forward(_config(ForwardConfig, options, support)))


for _factory in (api_key, jwt, basic, mtls, forward):
    _factory.Options = _ParsedByAuthSection()  # type: ignore[attr-defined]


def options_of(config: Any) -> Dict[str, Any]:
    """A built-in type's parsed config as its factory's options (everything but name and location)."""
    return {f.name: getattr(config, f.name) for f in attrs.fields(type(config)) if f.name not in ("name", "location")}
