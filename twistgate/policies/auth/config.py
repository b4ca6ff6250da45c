"""
The typed, frozen configuration of authentication: the top-level ``auth:``
section (named authenticators) and a route's ``auth:`` policy.  Parsed once
in `twistgate.policies.auth.parse`; nothing here is read per request.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple, Union

import attrs

from twistgate.config.model import Location
from twistgate.plugins.extension_points import ExtensionChoice

DEFAULT_REALM = "twistgate"
DEFAULT_STORE = "sqlite:var/twistgate.db"
KINDS = ("api_key", "jwt", "basic", "mtls", "forward")  # the built-in types; packages add more


@attrs.frozen(kw_only=True)
class ApiKeyConfig:
    name: str
    realm: str = DEFAULT_REALM
    header: Optional[str] = "X-API-Key"
    query: Optional[str] = None
    store: str = attrs.field(default=DEFAULT_STORE, repr=False)  # a PostgreSQL URL may hold a password
    cache_ttl: float = 10.0
    cache_size: int = 10_000
    store_timeout: float = 5.0
    forward_consumer: Optional[str] = None
    location: Location = Location()
    kind = "api_key"


@attrs.frozen(kw_only=True)
class JwtConfig:
    name: str
    algorithms: Tuple[str, ...]
    realm: str = DEFAULT_REALM
    secret: Optional[bytes] = attrs.field(default=None, repr=False)
    public_key: Optional[str] = None  # a PEM file, read when the gateway is built
    jwks_url: Optional[str] = None
    issuer: Tuple[str, ...] = ()  # any one of them
    audience: Tuple[str, ...] = ()  # the token's aud must name one of them
    leeway: float = 0.0
    required_claims: Tuple[str, ...] = ()
    forward_claims: Tuple[Tuple[str, str], ...] = ()  # (claim, header)
    consumer_claim: str = "sub"
    scopes_claim: str = "scope"
    roles_claim: str = "roles"
    jwks_refresh: float = 300.0
    jwks_min_interval: float = 30.0
    jwks_timeout: float = 5.0
    # Longer tokens are refused before anything is decoded (RFC 7515 sets no
    # limit; 8 KiB is what NGINX's default header buffer would let through).
    max_token_size: int = 8 * 1024
    forward_consumer: Optional[str] = None
    location: Location = Location()
    kind = "jwt"


@attrs.frozen(kw_only=True)
class BasicConfig:
    name: str
    htpasswd: str
    realm: str = DEFAULT_REALM
    cache_ttl: float = 60.0
    forward_consumer: Optional[str] = None
    location: Location = Location()
    kind = "basic"


@attrs.frozen(kw_only=True)
class MtlsConfig:
    name: str
    realm: str = DEFAULT_REALM
    forward_subject: Optional[str] = None
    forward_sans: Optional[str] = None
    forward_fingerprint: Optional[str] = None
    forward_issuer: Optional[str] = None
    allowed_subjects: Tuple[str, ...] = ()  # empty: any verified certificate
    allowed_sans: Tuple[str, ...] = ()
    forward_consumer: Optional[str] = None
    location: Location = Location()
    kind = "mtls"


@attrs.frozen(kw_only=True)
class ForwardConfig:
    """An external authorization service asked once per request (twistgate.policies.auth.forward)."""

    name: str
    url: str
    forward_headers: Tuple[str, ...] = ("Authorization", "Cookie")
    copy_headers: Tuple[str, ...] = ()
    consumer_header: Optional[str] = None  # a header of the 2xx answer naming the consumer
    timeout: float = 2.0
    cache_ttl: float = 0.0  # 0: ask every time
    realm: str = DEFAULT_REALM
    forward_consumer: Optional[str] = None
    location: Location = Location()
    kind = "forward"


@attrs.frozen(kw_only=True)
class PluginAuthConfig:
    """
    An authenticator from a package (``twistgate.authenticators`` entry
    point): ``type`` is its name, `choice` it with its converted options.
    ``realm`` and ``forward_consumer`` are the gateway's, as for built-ins.
    """

    name: str
    type: str
    choice: ExtensionChoice
    realm: str = DEFAULT_REALM
    forward_consumer: Optional[str] = None
    location: Location = Location()

    @property
    def kind(self) -> str:
        return self.type


AuthenticatorConfig = Union[ApiKeyConfig, JwtConfig, BasicConfig, MtlsConfig, ForwardConfig, PluginAuthConfig]


@attrs.frozen(kw_only=True)
class AuthSection:
    """The top-level ``auth:`` section: authenticators by name."""

    authenticators: Mapping[str, AuthenticatorConfig]
    location: Location = Location()


@attrs.frozen(kw_only=True)
class RouteAuthConfig:
    """
    A route's ``auth:``: any one of ``authenticators`` suffices; then the
    identity must meet every requirement given.
    """

    authenticators: Tuple[str, ...]
    scopes: Tuple[str, ...] = ()  # all of them
    roles: Tuple[str, ...] = ()  # any one of them
    consumers: Tuple[str, ...] = ()  # any one of them
    allowed_subjects: Tuple[str, ...] = ()  # mTLS subject, any one of them
    allowed_sans: Tuple[str, ...] = ()  # mTLS SAN, any one of them
    keep_credentials: bool = False
    location: Location = Location()
