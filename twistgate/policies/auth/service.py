"""
The ``auth`` service: every authenticator of the ``auth:`` section (built-in
types and packages' alike, through the ``twistgate.authenticators``
registry), built once per generation, with what they need over time (key stores and their
threads, JWKS refreshes, the bcrypt threads).  Files (PEM keys, htpasswd)
are read here, so a bad one stops the gateway with the section's location.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, List, Optional

from twisted.logger import Logger

from twistgate.policies.auth.api_keys import ApiKeyAuthenticator
from twistgate.policies.auth.basic import BasicAuthenticator
from twistgate.policies.auth.files import jwt_keys, read_htpasswd
from twistgate.plugins.extension_points import AUTHENTICATORS, ExtensionChoice, ExtensionContext, current_registry
from twistgate.policies.auth.builtins import AuthSupport, options_of
from twistgate.policies.auth.config import ApiKeyConfig, AuthSection, BasicConfig, ForwardConfig, JwtConfig, MtlsConfig, PluginAuthConfig
from twistgate.policies.auth.external import PluginAuthenticator
from twistgate.policies.auth.forward import ForwardAuthenticator, forward_client
from twistgate.policies.auth.jwks import KeySet
from twistgate.policies.auth.jwt_auth import JwtAuthenticator
from twistgate.policies.auth.jwt_keys import HMAC
from twistgate.policies.auth.key_store import Database, KeyStore, dialect_for, runner_for
from twistgate.policies.auth.mtls import MtlsAuthenticator
from twistgate.config.model import ConfigError, ConfigIssue

_log = Logger()


class AuthService:
    """Authenticators by name, and their lifetimes."""

    def __init__(
        self,
        section: AuthSection,
        *,
        clock: Any,
        http_client: Any,
        files: Any = None,
        peer_identity: Optional[Callable[[Any], Any]] = None,
        side_agent: Any = None,
        forward_client: Any = None,
        key_usage: Optional[Dict[str, float]] = None,
    ) -> None:
        """
        :param files: `twistgate.files.FileMaterial` (keys and users read beforehand); default: read now.
        :param side_agent: the gateway's `Agent` for its own calls; the
            ``forward`` authenticators send their subrequests through it.
        :param forward_client: a treq-like client for them instead (tests).
        :param key_usage: API key id -> when it last authenticated a request;
            the gateway's (`twistgate.ops.runtime.Operations`), so a reload keeps it.
        """
        self.section = section
        self.files = files
        self.clock = clock
        self.http_client = http_client
        self.side_agent = side_agent
        self._forward_client = forward_client
        self.key_usage: Dict[str, float] = key_usage if key_usage is not None else {}
        self.authenticators: Dict[str, Any] = {}
        self.stores: Dict[str, KeyStore] = {}
        self.key_sets: List[KeySet] = []
        self.password_runner: Any = None
        issues: List[ConfigIssue] = []
        for name, config in section.authenticators.items():
            try:
                self.authenticators[name] = self._build(config, peer_identity)
            except ConfigError as error:
                issues.extend(error.issues)
        if issues:
            raise ConfigError(issues)
        headers = set()
        for authenticator in self.authenticators.values():
            headers.update(_identity_headers(authenticator.config))
        #: Every header an authenticator may set upstream: client copies are always removed.
        self.identity_headers: FrozenSet[bytes] = frozenset(headers)

    def _build(self, config: Any, peer_identity: Optional[Callable[[Any], Any]]) -> Any:
        """
        One authenticator, through the ``twistgate.authenticators`` registry
        for built-in and package types alike; a factory's failure is a
        config error at the authenticator's location.
        """
        support = AuthSupport(self, config.name, config.location, peer_identity)
        context = ExtensionContext(
            name=config.kind, owner=f"auth.{config.name}", clock=self.clock, http_client=self.http_client, internal=support
        )
        if isinstance(config, PluginAuthConfig):
            return PluginAuthenticator(config.choice.create(context), config, self.clock)
        extension = current_registry().lookup(AUTHENTICATORS, config.kind)
        made = ExtensionChoice(extension=extension, options=options_of(config), location=config.location).create(context)
        return made.inner

    # -- the built-in types (called by their factories, twistgate.policies.auth.builtins) --

    def build_api_key(self, config: ApiKeyConfig) -> ApiKeyAuthenticator:
        return ApiKeyAuthenticator(config, self._store(config), self.clock, self.key_usage)

    def build_mtls(self, config: MtlsConfig, peer_identity: Optional[Callable[[Any], Any]]) -> MtlsAuthenticator:
        return MtlsAuthenticator(config, peer_identity)

    def build_forward(self, config: ForwardConfig) -> ForwardAuthenticator:
        return ForwardAuthenticator(config, self._forwarding_client(), self.clock)

    def _forwarding_client(self) -> Any:
        """One client for every forward authenticator: the side pool, no cookie jar, no redirects."""
        if self._forward_client is None:
            agent = self.side_agent
            if agent is None:
                from twisted.web.client import Agent

                agent = Agent(self.clock, connectTimeout=10)
            self._forward_client = forward_client(agent)
        return self._forward_client

    def _store(self, config: ApiKeyConfig) -> KeyStore:
        store = self.stores.get(config.store)
        if store is None:
            dialect = dialect_for(config.store)
            runner = runner_for(self.clock, dialect.threads, f"twistgate-keys-{dialect.name}")
            store = KeyStore(Database(dialect), runner, self.clock, config.store_timeout)
            self.stores[config.store] = store
        return store

    def build_jwt(self, config: JwtConfig) -> JwtAuthenticator:
        prepared = self.files.jwt_keys.get(config.name) if self.files is not None else None
        keys = prepared if prepared is not None else jwt_keys(config)
        key_set = None
        asymmetric = [a for a in config.algorithms if a not in HMAC]
        if config.jwks_url is not None and asymmetric:
            key_set = KeySet(
                config.jwks_url,
                self.http_client,
                self.clock,
                asymmetric,
                refresh=config.jwks_refresh,
                min_interval=config.jwks_min_interval,
                timeout=config.jwks_timeout,
                name=config.name,
            )
            self.key_sets.append(key_set)
        return JwtAuthenticator(config, self.clock, keys, key_set)

    def build_basic(self, config: BasicConfig) -> BasicAuthenticator:
        prepared = self.files.htpasswd.get(config.name) if self.files is not None else None
        users, dummy = prepared if prepared is not None else (read_htpasswd(config), None)
        if self.password_runner is None:
            self.password_runner = runner_for(self.clock, 2, "twistgate-bcrypt")
        return BasicAuthenticator(config, users, self.clock, self.password_runner, dummy)

    # -- what other parts of the gateway use --------------------------------

    def api_keys(self) -> Dict[str, ApiKeyAuthenticator]:
        return {n: a for n, a in self.authenticators.items() if isinstance(a, ApiKeyAuthenticator)}

    def admin_resource(self) -> Any:
        """The ``/admin/keys`` resource, or None without an api_key authenticator."""
        if not self.api_keys():
            return None
        from twistgate.policies.auth.admin import KeysResource

        return KeysResource(self)

    # -- lifetime ----------------------------------------------------------

    def start(self) -> None:
        for store in self.stores.values():
            store.start()
        if self.password_runner is not None:
            self.password_runner.start()
        for key_set in self.key_sets:
            if key_set.url.startswith("http://"):
                _log.warn(
                    "authenticator {name} fetches its JWKS over plain HTTP ({url}); use https outside a trusted network",
                    name=key_set.name,
                    url=key_set.url,
                )
            key_set.start()

    def stop(self) -> None:
        for key_set in self.key_sets:
            key_set.stop()
        for store in self.stores.values():
            store.stop()
        if self.password_runner is not None:
            self.password_runner.stop()


def _identity_headers(config: Any) -> List[bytes]:
    names = [config.forward_consumer]
    if isinstance(config, JwtConfig):
        names.extend(header for _, header in config.forward_claims)
    if isinstance(config, MtlsConfig):
        names.extend([config.forward_subject, config.forward_sans, config.forward_fingerprint, config.forward_issuer])
    if isinstance(config, ForwardConfig):
        names.extend(config.copy_headers)
    return [name.encode("ascii") for name in names if name]
